"""'head' granularity: one scale per image and head, by folding heads into Z (kernels/heads.py)."""
import pytest
import torch

from helpers import random_qkv, sqnr_db, swin_bias_and_mask
from qflash_kernels import compute_scales, int8qkv_attention, ivit_attention, qflash_attention, qflash_paper_attention
from qflash_kernels.heads import fold_heads, folded_mask, unfold_heads

OPS = {"qflash": qflash_attention, "qflash_paper": qflash_paper_attention, "ivit": ivit_attention}


@pytest.mark.parametrize("group", [1, 2, 4])
def test_fold_and_unfold_are_inverse_and_order_image_head_window(rng, group):
    images, h, n, d = 3, 5, 7, 16
    t = torch.randn(images * group, h, n, d, generator=rng)
    folded = fold_heads(t, group)
    assert folded.shape == (images * h * group, 1, n, d)
    b, head, w = 2, 3, group - 1
    assert torch.equal(folded[(b * h + head) * group + w, 0], t[b * group + w, head])
    assert torch.equal(unfold_heads(folded, h, group), t)


def test_folded_mask_sums_bias_and_window_mask_in_fold_order(rng):
    h, n, windows, group = 3, 9, 2, 4
    bias, mask = swin_bias_and_mask(rng, h, n, windows)
    combined = folded_mask(bias, mask, h, group)
    assert combined.shape == (h * group, n, n) and combined.dtype == torch.float32
    for head in range(h):
        for w in range(group):
            assert torch.equal(combined[head * group + w], bias[head] + mask[w % windows])
    with pytest.raises(ValueError, match="divide group"):
        folded_mask(bias, torch.zeros(3, n, n), h, 4)


@pytest.mark.parametrize("name", list(OPS))
def test_each_image_and_head_gets_its_own_scales(rng, name):
    # head granularity equals the op run on each (image, head) alone with one scale for it
    windows, images, h, n, d = 2, 2, 3, 49, 32
    q, k, v = random_qkv(rng, windows * images, h, n, d)
    bias, mask = swin_bias_and_mask(rng, h, n, windows)
    op = OPS[name]
    out = op(q, k, v, granularity="head", group=windows, bias=bias, mask=mask, backend="reference")
    assert out.shape == q.shape and out.dtype == q.dtype
    for b in range(images):
        rows = slice(b * windows, (b + 1) * windows)
        for head in range(h):
            one = op(*(t[rows, head:head + 1] for t in (q, k, v)), granularity="sample", group=windows,
                     mask=(bias[head] + mask).float(), backend="reference")
            assert torch.equal(out[rows, head:head + 1], one)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("n, windows", [(197, 1), (49, 2)])
def test_kernel_and_reference_agree_bit_exactly(rng, device, name, n, windows):
    q, k, v = random_qkv(rng, 2 * windows, 3, n, 64 if n > 64 else 32, device=device)
    bias, mask = swin_bias_and_mask(rng, 3, n, windows, device) if windows > 1 else (None, None)
    op = OPS[name]
    kw = dict(granularity="head", group=windows, bias=bias, mask=mask)
    assert torch.equal(op(q, k, v, backend="triton", **kw), op(q, k, v, backend="reference", **kw))


def test_heads_of_different_ranges_quantize_better_per_head(rng):
    # per-image scales follow the widest head; per-head scales give each head its own range (measured: worst
    # head about 9.5 dB per image, 28 dB per head)
    q, k, v = (torch.rand(2, 4, 64, 32, generator=rng) * 8 - 4 for _ in range(3))
    spread = torch.tensor([0.05, 0.3, 1.0, 4.0]).view(1, 4, 1, 1)
    q, k, v = ((t * spread).half() for t in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    def worst_head_db(out):
        return min(sqnr_db(out[:, head], ref[:, head]) for head in range(4))

    for op in (qflash_attention, int8qkv_attention):
        per_image = worst_head_db(op(q, k, v, granularity="sample"))
        per_head = worst_head_db(op(q, k, v, granularity="head"))
        assert per_head >= 25.0 and per_head >= per_image + 10.0, (per_head, per_image)


def test_head_granularity_has_no_per_z_scales(rng):
    q, k, v = random_qkv(rng, 1, 2, 8, 16)
    with pytest.raises(ValueError, match="head"):
        compute_scales(q, k, v, "head")
