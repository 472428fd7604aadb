"""CUDA-graph replay of a model's forward (eval.py --cuda-graphs): same outputs as eager calls.

On a machine without a GPU these tests check the clear refusal of CPU inputs instead."""
import pytest
import torch

from qflash_eval.attention_swap import AttentionConfig, swap_attention
from qflash_eval.graphs import GraphedForward
from qflash_eval.modes import MODES

from helpers import tiny_vit


@pytest.mark.parametrize("mode", [name for name, m in MODES.items() if m.is_integer])
def test_graphed_forward_replays_the_model_or_refuses_cpu_inputs(device, rng, mode):
    model = tiny_vit()
    swap_attention(model, AttentionConfig(mode))
    graphed = GraphedForward(model, max_shapes=2)
    x = torch.randn(4, 3, 64, 64, generator=rng)
    if device.type != "cuda":  # nothing to capture: a clear error instead of a silent eager run
        with pytest.raises(RuntimeError, match="CUDA device"):
            graphed(x)
        return
    model.to(device=device, dtype=torch.float16)
    x, y = x.to(device, torch.float16), torch.randn(4, 3, 64, 64, generator=rng).to(device, torch.float16)
    with torch.inference_mode():
        first = graphed(x)
        assert torch.equal(first, model(x))
        assert torch.equal(graphed(y), model(y))  # a second replay of the same graph, new input
        for _ in range(3):  # more replays, with the first input again
            assert torch.equal(graphed(x), first)
        assert torch.equal(first, model(x))  # the caller's copy is not overwritten by that replay
        assert torch.equal(graphed(x[:1]), model(x[:1]))  # a second shape, a second graph
        assert torch.equal(graphed(x[:3]), model(x[:3]))  # past max_shapes: eager
    assert graphed.describe() == {"captured_shapes": [[4, 3, 64, 64], [1, 3, 64, 64]], "eager_calls": 1,
                                  "fallback": None}
    assert graphed.setup_seconds > 0


class HostSynchronizing(torch.nn.Module):
    def forward(self, x):
        return x * (x.abs().max().item() + 1.0)  # .item() waits for the GPU: not capturable


def test_graphed_forward_falls_back_to_eager_when_capture_fails(device):
    graphed = GraphedForward(HostSynchronizing())
    x = torch.arange(6.0).view(2, 3)
    if device.type != "cuda":
        with pytest.raises(RuntimeError, match="CUDA device"):
            graphed(x)
        return
    x = x.to(device)
    for _ in range(2):
        assert torch.equal(graphed(x), x * 6.0)
    assert graphed.graphs == {} and graphed.eager_calls == 2
    assert graphed.fallback.startswith("capture failed for input [2, 3]")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_capture_runs_beside_a_thread_that_pins_memory(rng):
    """eval.py's data loader pins each batch in a thread of its own while graphs are captured; the capture
    must neither fail nor make that thread's CUDA calls fail."""
    import threading

    model = tiny_vit().to("cuda", torch.float16)
    swap_attention(model, AttentionConfig("qflash_paper"))
    graphed = GraphedForward(model, max_shapes=4)
    stop, errors = threading.Event(), []

    def pin():
        size = 1 << 16
        while not stop.is_set():
            try:
                torch.empty(size, dtype=torch.uint8, pin_memory=True)
                size = size % (1 << 22) + (1 << 16)  # new sizes: fresh pinned allocations
            except RuntimeError as err:
                errors.append(str(err))
                return

    thread = threading.Thread(target=pin)
    thread.start()
    try:
        with torch.inference_mode():
            for images in (4, 3, 2, 1):
                x = torch.randn(images, 3, 64, 64, generator=rng).to("cuda", torch.float16)
                assert torch.equal(graphed(x), model(x))
    finally:
        stop.set()
        thread.join()
    assert errors == [] and graphed.fallback is None and len(graphed.graphs) == 4
