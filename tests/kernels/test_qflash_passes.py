"""qflash's passes before the kernel, against torch: the per-image amax, the constants, the int8 pass (alone
and fused with the amax), and the op through them; bit-exact on fresh random inputs."""
import pytest
import torch

from helpers import random_qkv
from qflash_kernels import compute_scales, qflash_attention, qflash_reference
from qflash_kernels.jit import amax as amax_triton
from qflash_kernels.jit.amax import amax_per_z, fused_scales
from qflash_kernels.scales import group_amax, quantize_int8, scales_from_amax

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fused", [True, False])  # rows of the qkv buffer / one head at a time
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_amax_kernel_matches_torch(rng, device, dtype, fused):
    # 9 heads: a program's second is missing
    q, k, v = random_qkv(rng, 3, 3, 49, 32, dtype=dtype, device=device, fused=fused)
    assert amax_triton.reads_whole_rows(q, k, v) == fused
    v[1, 0, 5, 5] = float("nan")
    q[2, 2, 48, 31] = 1e4  # in the very last head
    got = amax_per_z(q, k, v)
    want = torch.stack([t.abs().amax(dim=(1, 2, 3)).float() for t in (q, k, v)])
    finite = torch.isfinite(want)
    assert torch.equal(got[finite], want[finite])
    assert torch.isinf(got[~finite]).all() and (~finite).sum() == 1
    assert torch.equal(amax_per_z(q, k, v, group_div=3)[:, 0][finite.all(1)], want.amax(1)[finite.all(1)])


@pytest.mark.parametrize("group_div", [1, 2, 6])
def test_amax_by_rows_with_many_chunks_per_slot(rng, device, group_div):
    # 8-row loads and 3 loads per program: a slot of 49 or 98 rows spans several chunks, the last partial
    q, k, v = random_qkv(rng, 6, 3, 49, 16, device=device)
    q[4, 1, 48, 15] = 100.0  # the last row of image 4
    out = torch.zeros((3, 6 // group_div), dtype=torch.int32, device=device)
    amax_triton._amax_by_rows(q, k, v, out, group_div, load_elements=8 * 64, chunk_bytes=3 * 8 * 48 * 2)
    want = torch.stack([t.abs().amax(dim=(1, 2, 3)).float().view(-1, group_div).amax(1) for t in (q, k, v)])
    assert torch.equal(out.view(torch.float32), want)


@pytest.mark.parametrize("granularity, group", [("sample", 1), ("sample", 2), ("batch", 1)])
@pytest.mark.parametrize("d", [32, 64, 128])
def test_fused_scales_match_the_torch_path(rng, device, granularity, group, d):
    q, k, v = random_qkv(rng, 6, 2, 49, d, device=device)
    q[1] *= 1e-3
    k[3] = 0.0
    v[5, 0, 0, 0] = float("inf")
    fused = fused_scales(q, k, v, granularity, group)
    torch_path = scales_from_amax(group_amax(q, k, v, granularity, group), d, granularity)
    for field in ("inv_q", "inv_k", "inv_v", "s_q", "s_k", "s_v", "exp_mul", "exp_dlim", "inv_c", "out_scale"):
        a, b = getattr(fused, field), getattr(torch_path, field)
        assert torch.equal(a.isnan(), b.isnan()), field
        a, b = torch.nan_to_num(a), torch.nan_to_num(b)
        if device.type == "cuda":  # the path production uses: identical bits
            assert torch.equal(a, b), field
        elif a.is_floating_point():  # the interpreter's div_rn rounds twice: within one ulp
            assert torch.allclose(a, b, rtol=2.0**-23, atol=0), field
        else:
            assert (a.long() - b.long()).abs().max() <= max(1, b.abs().max().item() >> 22), field


@pytest.mark.parametrize("n, d, dtype", [(197, 64, torch.float16), (49, 32, torch.bfloat16), (3, 16, torch.float32)])
def test_one_pass_quantization_matches_the_reference_rounding(rng, device, n, d, dtype):
    from qflash_kernels.jit.quantize import operand_key_order, quantize_qkv, v_in_key_order

    q, k, v = random_qkv(rng, 3, 2, n, d, dtype=dtype, device=device)  # strided views of one qkv tensor
    q[0, 1, 0, 0] = float("nan")
    scales = compute_scales(q, k, v, "static", static_scales=(0.01, 0.02, 0.015))  # saturates on purpose
    q8, k8, v8, v_rows = quantize_qkv(q, k, v, scales)
    # V is stored transposed, keys contiguous, padded with zeros to a multiple of 16, and each 16 keys in
    # the order of the kernel's P.V operand
    assert v_rows % 16 == 0 and n <= v_rows < n + 16 and v8.stride()[2:] == (1, v_rows)
    padded = torch.as_strided(v8, (3, 2, v_rows, d), v8.stride())
    order = operand_key_order(v_rows)
    assert sorted(order.tolist()) == list(range(v_rows)) and not torch.equal(order, torch.arange(v_rows))
    assert (padded[:, :, (order >= n).to(device)] == 0).all()
    for got, x, inv in zip((q8, k8, v_in_key_order(v8, v_rows)), (q, k, v), (scales.inv_q, scales.inv_k, scales.inv_v)):
        assert got.dtype == torch.int8 and got.shape == x.shape
        assert torch.equal(got.to(torch.int32), quantize_int8(x, inv))
        assert got.abs().max() == 127
    assert q8.is_contiguous() and k8.is_contiguous()


@pytest.mark.parametrize("n, d, dtype", [(197, 64, torch.float16), (70, 32, torch.float32)])
def test_one_launch_amax_and_int8_equal_the_separate_launches(rng, device, n, d, dtype):
    from qflash_kernels.jit.quantize import operand_key_order, quantize_qkv, scales_and_int8_qkv

    q, k, v = random_qkv(rng, 4, 3, n, d, dtype=dtype, device=device)
    k[1] = 0.0
    q[2] *= 1e-3
    v[3, 2, n - 1, d - 1] = float("nan")
    scales, int8 = scales_and_int8_qkv(q, k, v)
    want_scales = fused_scales(q, k, v, "sample", 1)
    for field in ("inv_q", "inv_k", "inv_v", "s_q", "s_k", "s_v", "exp_mul", "exp_dlim", "inv_c", "out_scale"):
        assert torch.equal(getattr(scales, field).nan_to_num(), getattr(want_scales, field).nan_to_num()), field
    assert scales.out_scale[3].isnan() and not scales.out_scale[:3].isnan().any()
    want_int8 = quantize_qkv(q, k, v, want_scales)
    for got, want in zip(int8[:3], want_int8[:3]):
        assert got.shape == want.shape and got.stride() == want.stride() and torch.equal(got, want)
    assert int8[3] == want_int8[3]
    padded = torch.as_strided(int8[2], (4, 3, int8[3], d), int8[2].stride())
    assert (padded[:, :, (operand_key_order(int8[3]) >= n).to(device)] == 0).all()


def test_passes_leaving_q_in_float(rng, device):
    # the op's setting: K and V to int8, Q handed to the kernel as it is (quantized on load)
    from qflash_kernels.jit.quantize import quantize_qkv, scales_and_int8_qkv

    q, k, v = random_qkv(rng, 3, 2, 90, 32, device=device)
    scales, all_int8 = scales_and_int8_qkv(q, k, v)
    for got in (scales_and_int8_qkv(q, k, v, quantize_q=False)[1], quantize_qkv(q, k, v, scales, quantize_q=False)):
        assert got[0] is q
        for a, b in zip(got[1:], all_int8[1:]):
            assert torch.equal(a, b) if torch.is_tensor(a) else a == b


def test_op_through_the_one_launch_quantization_is_bit_exact(rng, device, monkeypatch):
    import qflash_kernels.jit.qflash_launch as launcher

    monkeypatch.setattr(launcher, "one_pass_pays", lambda q: True)  # small test batches, CPU too
    q, k, v = random_qkv(rng, 3, 2, 100, 64, device=device)
    from qflash_kernels.jit.quantize import scales_and_int8_qkv

    out = qflash_attention(q, k, v, backend="triton")
    # the scales the op used (on CPU the interpreter's division may differ from torch's by one ulp)
    assert torch.equal(out, qflash_reference(q, k, v, scales_and_int8_qkv(q, k, v)[0]))
