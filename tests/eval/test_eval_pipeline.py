"""Model wrapping, the evaluation loop, reports and the command line (random weights: shapes only)."""
import json
import pathlib
import time

import pytest
import timm
import torch

from helpers import tiny_vit
from qflash_eval.swap.hand_written import SwinWindowAttention
from qflash_eval.swap.sdpa_route import RoutedAttention
from qflash_eval.attention_swap import (
    AttentionConfig, UnsupportedAttentionError, calibrate_static,
    swap_attention,
)
from qflash_eval.cli import main
from qflash_eval.data import Batch
from qflash_eval.evaluate import ModeModel, evaluate
from qflash_eval.modes import parse_modes
from qflash_eval.outcome import ImageOutcome
from qflash_eval.provenance import source_fingerprint
from qflash_eval.report import timing
from qflash_eval.stats import summarize


def batch_of(images, labels, index):
    return Batch(images, torch.tensor(labels), torch.tensor(index), [f"img{i}" for i in index], [])


def tiny_swin():
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, depths=(2, 2), num_heads=(3, 6),
                             embed_dim=96, img_size=112, num_classes=10).eval()


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.mark.parametrize("mode", ["qflash", "ivit", "int8qkv"])
def test_vit_swap_replaces_every_block_and_keeps_weights(mode):
    model = tiny_vit()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
    n = swap_attention(model, AttentionConfig(mode, backend="reference"))
    assert n == 12
    assert sum(isinstance(m, RoutedAttention) for m in model.modules()) == 12
    with torch.inference_mode():
        got = model(x)
    assert cosine(got, expected) > 0.99
    assert not torch.equal(got, expected)


def test_swin_swap_uses_bias_and_shift_mask():
    from helpers import sqnr_db

    torch.manual_seed(0)
    model = tiny_swin()
    shifted = model.layers[0].blocks[1]  # the shifted-window block: mask of 0 / -100
    assert shifted.attn_mask is not None
    shifted.attn.relative_position_bias_table.data.normal_(0, 2.0)  # a bias large enough to matter
    windows, n = shifted.attn_mask.shape[:2]
    x = torch.randn(2 * windows, n, 96)
    with torch.inference_mode():
        expected = shifted.attn(x, mask=shifted.attn_mask)
    assert swap_attention(model, AttentionConfig("qflash", backend="reference")) == 4
    wrapper = model.layers[0].blocks[1].attn
    assert isinstance(wrapper, SwinWindowAttention)
    model.qflash_context.batch_size = 2
    with torch.inference_mode():
        got = wrapper(x, mask=shifted.attn_mask)
        no_mask = wrapper(x)
        wrapper.inner.relative_position_bias_table.data.zero_()
        no_bias = wrapper(x, mask=shifted.attn_mask)
    assert sqnr_db(got, expected) > 30
    assert sqnr_db(no_mask, expected) < 20 and sqnr_db(no_bias, expected) < 20


def test_float_modes_replace_nothing_but_check_the_model():
    model = tiny_vit()
    assert swap_attention(model, AttentionConfig("fp16")) == 0
    class UnknownAttention(torch.nn.Module):  # a token mixer this tool has not verified
        def forward(self, x):
            return x

    mixed = tiny_vit()
    mixed.blocks[3].extra = UnknownAttention()
    with pytest.raises(UnsupportedAttentionError, match="cannot be made integer: blocks.3.extra"):
        swap_attention(mixed, AttentionConfig("fp16"))


def test_model_without_attention_is_refused():
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    with pytest.raises(UnsupportedAttentionError, match="ResNet no softmax attention module found"):
        swap_attention(model, AttentionConfig("qflash"))


def test_sample_granularity_adds_no_batch_dependence():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 64, 64)
    float_model = tiny_vit()
    int_model = tiny_vit()
    int_model.load_state_dict(float_model.state_dict())
    swap_attention(int_model, AttentionConfig("qflash", backend="reference"))
    with torch.inference_mode():
        alone, batched = int_model(x[2:3]), int_model(x)[2:3]
        f_alone, f_batched = float_model(x[2:3]), float_model(x)[2:3]
    # the integer attention is batch-invariant (bit-exact, tests/test_qflash_kernel.py); the logits
    # differ at most as much as the float model's own linear layers do between batch sizes
    assert (alone - batched).abs().max() <= (f_alone - f_batched).abs().max() + 1e-6
    assert torch.equal(alone.argmax(1), batched.argmax(1))


@pytest.mark.parametrize("make", [tiny_vit, tiny_swin])
def test_head_granularity_through_the_swap(make):
    # one scale per image and head: batch-invariant like 'sample', and a different result from it
    torch.manual_seed(0)
    size = 112 if make is tiny_swin else 64
    x = torch.randn(3, 3, size, size)
    models = {g: make() for g in ("sample", "head")}
    models["head"].load_state_dict(models["sample"].state_dict())
    for g, model in models.items():
        swap_attention(model, AttentionConfig("qflash", granularity=g, backend="reference"))
    with torch.inference_mode():
        head, sample = models["head"](x), models["sample"](x)
        alone = models["head"](x[1:2])
    assert torch.isfinite(head).all() and not torch.equal(head, sample)
    assert cosine(head, sample) > 0.99
    assert torch.equal(alone.argmax(1), head[1:2].argmax(1))


def test_batch_granularity_does_depend_on_the_batch():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    x[0] *= 5
    model = tiny_vit()
    swap_attention(model, AttentionConfig("qflash", granularity="batch", backend="reference"))
    with torch.inference_mode():
        assert not torch.allclose(model(x[1:2]), model(x)[1:2], atol=1e-4)


def test_static_granularity_needs_and_uses_calibration():
    model = tiny_vit()
    swap_attention(model, AttentionConfig("qflash", granularity="static", backend="reference"))
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(RuntimeError, match="calibration"), torch.inference_mode():
        model(x)
    assert calibrate_static(model, [x]) == 2
    with torch.inference_mode():
        assert torch.isfinite(model(x)).all()


class InterruptingLoader:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        yield self.batches[0]
        raise KeyboardInterrupt


def test_interrupted_evaluation_keeps_finished_batches():
    model = tiny_vit()
    batch = batch_of(torch.randn(3, 3, 64, 64), [1, 2, 3], [0, 1, 2])
    outcome, interrupted = evaluate([ModeModel("fp32", model, torch.float32, 0)], InterruptingLoader([batch]),
                                    torch.device("cpu"))
    assert interrupted
    assert [r.index for r in outcome.rows()] == [0, 1, 2]


class SlowLoader:
    """Two batches, each delivered after `delay` seconds, as a decode-bound loader would."""

    def __init__(self, batch, delay):
        self.batch, self.delay = batch, delay

    def __iter__(self):
        for _ in range(2):
            time.sleep(self.delay)
            yield self.batch


def test_loop_separates_data_wait_warmup_and_model_time():
    model = tiny_vit()
    batch = batch_of(torch.randn(2, 3, 64, 64), [1, 2], [0, 1])
    outcome, _ = evaluate([ModeModel("fp32", model, torch.float32, 0)], SlowLoader(batch, 0.2),
                          torch.device("cpu"), warmup=True)
    assert 0.2 <= outcome.first_batch_seconds < 0.2 + 0.15
    assert 0.2 <= outcome.data_wait_seconds < 0.2 + 0.15  # the second batch only
    assert outcome.warmup_seconds[0] > 0 and outcome.seconds[0] > 0
    assert outcome.wall_seconds >= outcome.first_batch_seconds + outcome.data_wait_seconds + outcome.seconds[0]
    t = timing(4, outcome.wall_seconds, outcome.data_wait_seconds, outcome.first_batch_seconds,
                   outcome.seconds.tolist(), {"fp32": float(outcome.warmup_seconds[0])})
    assert 0 < t["data_wait_fraction"] < 1 and t["loop_other_s"] >= 0
    assert t["images_per_s"] == round(4 / outcome.wall_seconds, 1)


class RecordingProgress:
    def __init__(self):
        self.postfixes, self.images = [], 0

    def set_postfix_str(self, text):
        self.postfixes.append(text)

    def update(self, n):
        self.images += n


def test_progress_bar_says_when_kernels_compile():
    batch = batch_of(torch.randn(2, 3, 64, 64), [1, 2], [0, 1])
    progress = RecordingProgress()
    evaluate([ModeModel("fp32", tiny_vit(), torch.float32, 0), ModeModel("fp16", tiny_vit(), torch.float32, 0)],
             SlowLoader(batch, 0.0), torch.device("cpu"), progress=progress, warmup=True)
    assert progress.postfixes[:2] == ["warm-up: fp32 (kernels compile on first use)",
                                      "warm-up: fp16 (kernels compile on first use)"]
    assert progress.postfixes[2].startswith("fp32 ") and progress.images == 4


class FailsOnSecondCall(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")
        return self.inner(x)


def test_a_failing_mode_is_named_and_the_finished_batches_kept():
    batch = batch_of(torch.randn(2, 3, 64, 64), [1, 2], [0, 1])
    models = [ModeModel("fp32", tiny_vit(), torch.float32, 0),
              ModeModel("qflash", FailsOnSecondCall(tiny_vit()), torch.float32, 0)]
    outcome, interrupted = evaluate(models, SlowLoader(batch, 0.0), torch.device("cpu"), warmup=False)
    assert not interrupted and len(outcome.batches) == 1
    assert outcome.stopped == ("the qflash model failed on images 0-1: RuntimeError: CUDA error: an illegal memory "
                               "access was encountered")


class CapturingForward:
    """Stands in for graphs.GraphedForward: the first call of each input shape spends 0.2 s capturing."""

    def __init__(self, model):
        self.model, self.setup_seconds, self.shapes = model, 0.0, set()

    def __call__(self, x):
        if x.shape not in self.shapes:
            self.shapes.add(x.shape)
            time.sleep(0.2)
            self.setup_seconds += 0.2
        return self.model(x)


def test_graph_capture_counts_as_warmup_not_model_time():
    model = tiny_vit()
    batches = [batch_of(torch.randn(2, 3, 64, 64), [1, 2], [0, 1]),
               batch_of(torch.randn(1, 3, 64, 64), [3], [2])]  # a short last batch
    outcome, _ = evaluate([ModeModel("fp32", model, torch.float32, 0, CapturingForward(model))], batches,
                          torch.device("cpu"), warmup=False)
    assert outcome.warmup_seconds[0] == pytest.approx(0.4)
    # counted once: had the captures stayed in model time, model + warm-up would exceed the loop's wall time
    assert 0 < outcome.seconds[0] and outcome.seconds[0] + outcome.warmup_seconds[0] <= outcome.wall_seconds


class SlowOnNewShape(torch.nn.Module):
    """Eager stand-in for cuDNN's attention: 0.3 s for the first call of each input shape (a plan build)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.shapes = inner, set()

    def forward(self, x):
        if x.shape[0] not in self.shapes:
            self.shapes.add(x.shape[0])
            time.sleep(0.3)
        return self.inner(x)


def test_a_new_batch_size_is_warmed_up_before_it_is_timed():
    batches = [batch_of(torch.randn(2, 3, 64, 64), [1, 2], [0, 1]),
               batch_of(torch.randn(3, 3, 64, 64), [3, 4, 5], [2, 3, 4])]  # a last batch of a new size
    outcome, _ = evaluate([ModeModel("fp16", SlowOnNewShape(tiny_vit()), torch.float32, 0)], batches,
                          torch.device("cpu"), warmup=True)
    # three plan builds (2 images, 1 image, 3 images), all in warm-up; none in the model time
    assert outcome.warmup_seconds[0] >= 0.9 and outcome.seconds[0] < 0.3


def test_summary_agreement_and_paired_interval():
    rows = [(0, 1, [1, 1], [1, 1]), (1, 2, [2, 3], [1, 1]), (2, 3, [0, 0], [0, 1]), (3, 4, [4, 4], [1, 1])]
    rows = [ImageOutcome(*r, [], f"img{r[0]}") for r in rows]
    res = summarize(["fp16", "qflash"], rows, [1.0, 2.0])
    assert res["fp16"]["top1"] == 75.0 and res["qflash"]["top1"] == 50.0
    assert res["qflash"]["agreement"] == 75.0 and res["qflash"]["delta_top1"] == -25.0
    lo, hi = res["qflash"]["delta_top1_ci95"]
    assert lo < -25.0 < hi
    assert res["qflash"]["top5"] == 100.0 and res["qflash"]["images_per_s"] == 2.0


def test_parse_modes():
    assert parse_modes("all", True) == ["fp32", "fp16", "ivit", "qflash_paper", "qflash"]
    assert parse_modes("qflash", True) == ["fp16", "qflash"]
    assert parse_modes("qflash", False) == ["qflash"]
    with pytest.raises(ValueError, match="unknown mode"):
        parse_modes("int4", True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "not_a_model_xyz", "--data", "."], "unknown model"),
        (["--model", "deit_tiny", "--mode", "fastest", "--data", "."], "unknown mode"),
        (["--model", "deit_tiny", "--weights", "/nonexistent/w.safetensors"], "weights file not found"),
        (["--model", "deit_tiny", "--weights", __file__.replace(".py", ".missing")], "not found"),
        (["--model", "deit_tiny", "--device", "cpu", "--cuda-graphs"], "--cuda-graphs needs a CUDA device"),
    ],
)
def test_cli_errors_are_clear_and_nonzero(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_data_path(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file(timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict(), str(weights))
    assert main(["--model", "deit_tiny", "--weights", str(weights), "--data", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_end_to_end_on_a_tiny_folder_and_compare(tmp_path, capsys):
    from PIL import Image
    from safetensors.torch import save_file

    from qflash_eval.data import imagenet_wnids

    wnids = imagenet_wnids()
    data = tmp_path / "imgs"
    data.mkdir()
    for c in range(5):
        Image.new("RGB", (260, 250), (40 * c, 90, 200 - 30 * c)).save(data / f"{wnids[c]}_x.JPEG")
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict(), str(weights))
    out = tmp_path / "r" / "a.json"
    code = main(["--model", "deit_tiny", "--weights", str(weights), "--data", str(data), "--mode", "qflash,int8qkv",
                 "--dtype", "float32", "--qflash-backend", "reference", "--batch-size", "2", "--workers", "0", "--results", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    assert list(report["results"]) == ["fp16", "qflash", "int8qkv"]
    assert report["results"]["qflash"]["count"] == 5 and report["results"]["qflash"]["dtype"] == "float32"
    assert report["results"]["qflash"]["attention_modules_replaced"] == 12
    assert report["weights_sha256"] and report["provenance"]["versions"]["torch"]
    assert report["provenance"]["source_sha256"] == source_fingerprint(pathlib.Path(__file__).resolve().parents[2])
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".md").is_file()
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
    table = capsys.readouterr().out
    assert table.count("| a | deit_tiny | qflash |") == 2


def test_source_fingerprint_follows_the_code(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "configs").mkdir()
    kernel = tmp_path / "kernels" / "k.py"
    kernel.write_text("x = 1\n")
    (tmp_path / "configs" / "models.toml").write_text("[a]\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = source_fingerprint(tmp_path)
    assert len(first) == 16 and int(first, 16) >= 0
    (tmp_path / "notes.txt").write_text("still not code")
    assert source_fingerprint(tmp_path) == first
    kernel.write_text("x = 2\n")
    assert source_fingerprint(tmp_path) != first
