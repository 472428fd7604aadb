"""Fail fast, with a useful message, when the Hugging Face hub cannot be reached.

huggingface_hub retries for most of a minute when the network is down. A 3-second TCP probe first
tells offline from online; offline, loading goes on from the local cache (HF_HUB_OFFLINE=1), and a
cache miss becomes a clear error that says what to pass instead.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


class HubUnavailableError(RuntimeError):
    pass


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def go_offline_if_unreachable() -> bool:
    """Returns True when online; otherwise switches huggingface_hub/datasets to the local cache."""
    if hub_reachable():
        return True
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:  # the constant is read at import time by some versions
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        pass
    return False
