"""Every supported timm family, its smallest variant with lively random weights (family_models.py), one
image: float modes are timm's own forward bit for bit, every integer mode stays close to the float logits,
each swapped module hands the reference exactly its q, k, v, bias and scale, and refused families are
refused by name."""
import copy

import pytest
import torch

from family_models import input_for, lively_model
from qflash_eval.attention_swap import AttentionConfig, SwappedAttention, UnsupportedAttentionError, swap_attention
from qflash_eval.families import REFUSED_FAMILIES, SUPPORTED_FAMILIES
from qflash_kernels import qflash_reference
from qflash_kernels.scales import ScaleRule
from qflash_kernels.shapes import default_softmax_scale, pad_head_dims

pytestmark = pytest.mark.slow

INTEGER_MODES = ("qflash", "qflash_paper", "ivit", "int8qkv")
# relative L2 error of the logits against float32, measured (seed 0, one image): qflash and int8qkv
# 0.0007-0.013, qflash_paper 0.010-0.18, ivit 0.007-0.15; FastViT's two attention layers feed a head that
# amplifies them (qflash 0.079). LeViT's random scores span less than 0.4 logits per row: qflash_paper's
# published constants (sm_scale 2**16 < 1) and ivit's normaliser (row sum > 2**31) then give 0, so those
# two cells are only checked module by module (docs/algorithm.md, "Small score ranges").
BOUNDS = {"qflash": 0.03, "int8qkv": 0.03, "qflash_paper": 0.3, "ivit": 0.25}
OVERRIDES = {("FastViT", "qflash"): 0.12, ("FastViT", "int8qkv"): 0.12,
             ("LeViT", "qflash_paper"): None, ("LeViT", "ivit"): None}


def recorded_calls(model, x, monkeypatch) -> list:
    """One forward of a swapped model: (q, k, v, bias, mask, scale, group, output) of every attend call."""
    calls = []
    attend = SwappedAttention.attend

    def recording(self, q, k, v, bias=None, mask=None, scale=None):
        out = attend(self, q, k, v, bias=bias, mask=mask, scale=scale)
        calls.append((q, k, v, bias, mask, scale, self.images_group(q.shape[0]), out))
        return out

    monkeypatch.setattr(SwappedAttention, "attend", recording)
    with torch.no_grad():
        model(x)
    monkeypatch.setattr(SwappedAttention, "attend", attend)
    return calls


@pytest.fixture(scope="module", params=list(SUPPORTED_FAMILIES))
def family(request):
    model = lively_model(SUPPORTED_FAMILIES[request.param])
    x = input_for(model)
    with torch.no_grad():
        logits = model(x)
    return request.param, model, x, logits


def test_float_modes_are_timms_forward(family):
    _, model, x, logits = family
    for mode in ("fp32", "fp16"):
        float_model = copy.deepcopy(model)
        assert swap_attention(float_model, AttentionConfig(mode)) == 0
        with torch.no_grad():
            assert torch.equal(float_model(x), logits)


def test_swapped_forwards_in_float_are_timms(family):
    """With float attention in place of the integer call (the calibration pass), every swapped forward is
    timm's own function: the rewritten ones (talking heads, cosine attention, pooling) lose nothing. Every
    linear bias is made nonzero first, so that the bias terms (CaiT's proj_l / proj_w) are tested too."""
    _, model, x, _ = family
    biased = copy.deepcopy(model)
    with torch.no_grad():
        for module in biased.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(2))
        logits = biased(x)
    swapped = copy.deepcopy(biased)
    swap_attention(swapped, AttentionConfig("qflash", backend="reference"))
    swapped.qflash_context.observing = True
    with torch.no_grad():
        out = swapped(x)
    assert ((out - logits).norm() / logits.norm()).item() < 1e-5


@pytest.mark.parametrize("mode", INTEGER_MODES)
def test_integer_logits_close_to_float(family, mode):
    name, model, x, logits = family
    swapped = copy.deepcopy(model)
    replaced = swap_attention(swapped, AttentionConfig(mode, backend="reference"))
    assert replaced == sum(isinstance(m, SwappedAttention) for m in swapped.modules()) > 0
    with torch.no_grad():
        out = swapped(x)
    assert torch.isfinite(out).all()
    bound = OVERRIDES.get((name, mode), BOUNDS[mode])
    error = ((out - logits).norm() / logits.norm()).item()
    if bound is None:
        assert error > 0.5  # the collapse the comment above explains: a change here needs the docs changed
    else:
        assert error < bound, f"{name} {mode}: relative logit error {error:.4f}"


def test_swapped_modules_give_the_reference_its_inputs(family, monkeypatch):
    """Each module's integer attention equals qflash_reference on the q, k, v, bias it formed, with the
    scales of one image and its softmax scale: the plumbing (groups, padding, bias, scale) is right."""
    _, model, x, _ = family
    swapped = copy.deepcopy(model)
    swap_attention(swapped, AttentionConfig("qflash", backend="reference"))
    calls = recorded_calls(swapped, x, monkeypatch)
    assert calls
    for q, k, v, bias, mask, scale, group, out in calls:
        assert group == q.shape[0]  # one image: every window / patch of the call is its
        d_v = v.shape[3]
        softmax_scale = default_softmax_scale(q.shape[3], scale)
        if q.shape[3] != v.shape[3] or q.shape[3] not in (16, 32, 64, 128):
            softmax_scale = scale if scale is not None else q.shape[3] ** -0.5
            q, k, v = pad_head_dims(q, k, v)
        total = None if bias is None else bias.float()
        scales = ScaleRule(group=group, softmax_scale=softmax_scale).compute(q, k, v)
        expected = qflash_reference(q, k, v, scales, total, mask)[..., :d_v]
        assert torch.equal(out, expected)


@pytest.mark.parametrize("name", list(REFUSED_FAMILIES))
def test_refused_families_are_named(name):
    import timm

    model = timm.create_model(REFUSED_FAMILIES[name], pretrained=False)
    with pytest.raises(UnsupportedAttentionError, match="cannot be made integer|no softmax attention"):
        swap_attention(model, AttentionConfig("qflash"))


def test_list_models_agrees_with_what_runs(capsys):
    from qflash_eval.cli import main
    from qflash_eval.swap.listing import model_support

    for name in SUPPORTED_FAMILIES.values():
        assert model_support(name).integer, name
    for name in REFUSED_FAMILIES.values():
        assert not model_support(name).integer, name
    assert main(["--list-models", "xcit_nano_12_p16_2*"]) == 0
    out = capsys.readouterr().out
    assert out.split()[:2] == ["xcit_nano_12_p16_224", "no"] and "XCA" in out
    assert main(["--list-models", "no_such_model_*"]) == 2


# in the interpreter (CPU) a few families with short sequences; every family on a GPU
INTERPRETED_FAMILIES = ("LeViT", "EfficientFormer")


@pytest.mark.parametrize("mode", ("qflash", "qflash_paper", "ivit"))
def test_triton_equals_reference_in_every_family(device, mode, monkeypatch):
    """Each swapped module's Triton attention (CUDA, or the interpreter) equals the reference on the very
    q, k, v, bias, mask and scale the module formed."""
    import qflash_kernels as qk

    families = SUPPORTED_FAMILIES if device.type == "cuda" else INTERPRETED_FAMILIES
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    entry = {"qflash": qk.qflash_attention, "qflash_paper": qk.qflash_paper_attention, "ivit": qk.ivit_attention}[mode]
    for name in families:
        model = lively_model(SUPPORTED_FAMILIES[name]).to(device, dtype)
        swap_attention(model, AttentionConfig(mode, backend="triton"))
        calls = recorded_calls(model, input_for(model, images=2 if device.type == "cuda" else 1).to(device, dtype),
                               monkeypatch)
        assert calls, name
        for q, k, v, bias, mask, scale, group, out in calls:
            ref = entry(q, k, v, bias=bias, mask=mask, group=group, softmax_scale=scale, backend="reference")
            assert torch.isfinite(out).all() or not torch.isfinite(ref).all(), name
            assert torch.equal(out, ref), f"{name}: {tuple(q.shape)} {tuple(k.shape)} {tuple(v.shape)}"
