"""The fused I-ViT kernel against the I-ViT reference: bit-exact on fresh random inputs and awkward shapes."""
import pytest
import torch

from helpers import random_qkv, swin_bias_and_mask
from qflash_kernels import ivit_attention

pytestmark = pytest.mark.slow


def kernel_and_reference(q, k, v, **kw):
    return (ivit_attention(q, k, v, backend="triton", **kw), ivit_attention(q, k, v, backend="reference", **kw))


# one key, a partial, a whole and several key tiles
@pytest.mark.parametrize("n, d", [(1, 32), (49, 32), (64, 64), (65, 64), (197, 64), (257, 32)])
@pytest.mark.parametrize("granularity", ["sample", "batch"])
def test_bit_exact_vit(rng, device, n, d, granularity):
    q, k, v = random_qkv(rng, 2, 2, n, d, device=device)
    out, ref = kernel_and_reference(q, k, v, granularity=granularity)
    assert out.dtype == q.dtype and out.shape == q.shape and torch.isfinite(out).all()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("bits", [2, 8, 12, 16])
@pytest.mark.parametrize("d", [16, 128])
def test_bit_exact_at_every_output_width_and_head_dim(rng, device, bits, d):
    q, k, v = random_qkv(rng, 2, 2, 70, d, device=device, spread=4.0)
    out, ref = kernel_and_reference(q, k, v, output_bits=bits)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("n", [49, 50])
@pytest.mark.parametrize("with_mask", [False, True])
def test_bit_exact_swin_bias_and_mask(rng, device, n, with_mask):
    windows, images, h = 4, 2, 3
    q, k, v = random_qkv(rng, windows * images, h, n, 32, device=device)
    bias, mask = swin_bias_and_mask(rng, h, n, windows, device)
    out, ref = kernel_and_reference(q, k, v, group=windows, bias=bias.half(), mask=mask if with_mask else None,
                                    output_bits=8)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_bit_exact_in_other_dtypes_and_static_scales(rng, device, dtype):
    q, k, v = random_qkv(rng, 3, 2, 40, 64, dtype=dtype, device=device)
    out, ref = kernel_and_reference(q, k, v)
    assert out.dtype == dtype and torch.equal(out, ref)
    out, ref = kernel_and_reference(q, k, v, granularity="static", static_scales=(0.02, 0.02, 0.03))
    assert torch.equal(out, ref)


def test_near_zero_scores_reach_the_clamped_doubling(rng, device):
    # scores of about 1e-6: one doubling would be 10**8 int8 units, clamped to 2**20 in both paths
    q, k, v = random_qkv(rng, 2, 1, 33, 32, device=device)
    out, ref = kernel_and_reference(q * 1e-3, k * 1e-3, v)
    assert torch.equal(out, ref)


def test_non_finite_input_gives_nan_for_its_image_only(rng, device):
    q, k, v = random_qkv(rng, 3, 2, 20, 32, device=device)
    q = q.clone()
    q[1, 0, 3, 5] = float("inf")
    out, ref = kernel_and_reference(q, k, v)
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()
    assert torch.equal(out[[0, 2]], ref[[0, 2]])


@pytest.mark.parametrize("launch", [(32, 32, 4), (128, 64, 8), (64, 32, 4)])  # default_launch: one 256-key tile
def test_launch_shape_does_not_change_the_bits(rng, device, launch):
    from qflash_kernels import compute_scales
    from qflash_kernels.jit.ivit import launch_ivit

    q, k, v = random_qkv(rng, 1, 2, 150, 64, device=device)
    scales = compute_scales(q, k, v)
    assert torch.equal(launch_ivit(q, k, v, scales, launch=launch), launch_ivit(q, k, v, scales))
