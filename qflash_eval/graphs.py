"""A model's forward replayed from CUDA graphs: one graph per input shape, captured on first use.

Eager integer attention pays the host's launch time of several Triton kernels per layer (hundreds of
microseconds per call), which dominates small models; replaying a captured graph, as a deployment
would, leaves the GPU time. The results are the same kernels on the same inputs.
"""
from __future__ import annotations

import time
from typing import Optional

import torch
from torch import nn

MAX_SHAPES = 4  # the full batch, one image (warm-up) and the short last batches of a few workers
WARMUP_CALLS = 2  # eager calls on a side stream before capture: compile and autotune outside the graph


class GraphedForward:
    """Calls model(x) through a CUDA graph per (shape, dtype) of x, at most MAX_SHAPES of them.

    Each graph reads x from its own static input buffer and writes a static output that the next replay
    overwrites, so the caller gets a copy. Shapes past MAX_SHAPES run eagerly; if a capture fails (a
    model that synchronizes with the host cannot be captured), every later call runs eagerly and
    `fallback` says why.
    """

    def __init__(self, model: nn.Module, max_shapes: int = MAX_SHAPES):
        self.model = model
        self.max_shapes = max_shapes
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = {}
        self.pool = None
        self.eager_calls = 0
        self.fallback: Optional[str] = None
        self.setup_seconds = 0.0  # warm-up calls and captures, which callers keep out of model time

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            raise RuntimeError("CUDA graphs need inputs on a CUDA device")
        key = (tuple(x.shape), x.dtype)
        entry = self.graphs.get(key)
        if entry is None and self.fallback is None and len(self.graphs) < self.max_shapes:
            entry = self._capture(x, key)
        if entry is None:
            self.eager_calls += 1
            return self.model(x)
        static_in, static_out, graph = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    def _capture(self, x: torch.Tensor, key: tuple):
        torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        try:
            return self._warm_up_and_capture(x, key)
        finally:
            torch.cuda.synchronize(x.device)
            self.setup_seconds += time.perf_counter() - start

    def _warm_up_and_capture(self, x: torch.Tensor, key: tuple):
        static_in = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    self.model(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            # thread_local: the data loader's pin-memory thread keeps allocating pinned memory meanwhile,
            # which the default (global) mode forbids, failing that thread's next batch with a CUDA error
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                static_out = self.model(static_in)
        except RuntimeError as err:
            self.fallback = f"capture failed for input {list(key[0])}: {str(err).splitlines()[0]}"
            return None
        self.graphs[key] = (static_in, static_out, graph)
        return self.graphs[key]

    def describe(self) -> dict:
        """What ran: the captured input shapes, eager calls, and why capture stopped (None if it did not)."""
        return {
            "captured_shapes": [list(shape) for shape, _ in self.graphs],
            "eager_calls": self.eager_calls,
            "fallback": self.fallback,
        }
