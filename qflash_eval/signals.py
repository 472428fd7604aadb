"""SIGTERM (sent by `timeout`, Slurm and Kubernetes) handled like Ctrl-C: finished work is written."""
from __future__ import annotations

import contextlib
import signal
import threading

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class StopSignals:
    """Within `with StopSignals() as s:` SIGTERM raises KeyboardInterrupt as SIGINT does; s.received
    names the last signal that arrived (None if none)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        raise KeyboardInterrupt

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        return False

    def exit_code(self) -> int:
        return EXIT_CODES.get(self.received or "SIGINT", 130)


@contextlib.contextmanager
def held():
    """SIGINT and SIGTERM held back while finished work is written: a Ctrl-C pressed then is recorded, and
    raised as KeyboardInterrupt once every file is on disk. (Blocking the signals would not do: another
    thread of the process may take them.) Outside the main thread nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt
