"""Energy per call from NVML's total-energy counter (millijoules since the driver loaded), over at least a
second of CUDA-graph replays; None, with the reason, where NVML or the counter is not there."""
from __future__ import annotations

import time
from typing import Callable, Optional

MIN_SECONDS = 1.0  # the counter updates every few tens of ms: a second keeps its step below a few percent


class EnergyMeter:
    def __init__(self, device_index: int = 0):
        self.handle, self.reason = None, None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self._read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as err:  # noqa: BLE001 - no nvidia-ml-py, no driver support, no permission
            self.handle, self.reason = None, f"NVML energy counter unavailable: {type(err).__name__}: {err}"

    @property
    def available(self) -> bool:
        return self.handle is not None

    def per_call_mj(self, replay: Callable, min_seconds: float = MIN_SECONDS) -> Optional[float]:
        """Millijoules per call of `replay` (a CUDA-graph replay), averaged over >= min_seconds of calls."""
        import torch

        if not self.available:
            return None
        torch.cuda.synchronize()
        start = time.perf_counter()
        replay()
        torch.cuda.synchronize()
        one = max(time.perf_counter() - start, 1e-6)
        calls = max(10, int(min_seconds / one) + 1)
        torch.cuda.synchronize()
        before, t0 = self._read(), time.perf_counter()
        for _ in range(calls):
            replay()
        torch.cuda.synchronize()
        after, elapsed = self._read(), time.perf_counter() - t0
        if elapsed < min_seconds * 0.5:  # the first call was slow (compile, clocks): measure again, longer
            return self.per_call_mj(replay, min_seconds * 2)
        return (after - before) / calls
