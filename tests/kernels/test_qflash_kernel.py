"""The Triton kernel against the integer reference: bit-exact on fresh random inputs."""
import pytest
import torch
import triton
import triton.language as tl

from helpers import random_qkv, swin_bias_and_mask
from qflash_kernels import compute_scales, qflash_attention, qflash_attention_int8, qflash_reference
from qflash_kernels.jit import qflash_arith
from qflash_kernels.scales import quantize_int8

pytestmark = pytest.mark.slow


def kernel_and_reference(q, k, v, granularity, group=1, bias=None, mask=None, static=None):
    # the op computes its own scales, as in production (then the kernel skips the clamp and NaN test)
    out = qflash_attention(q, k, v, granularity=granularity, group=group, static_scales=static, bias=bias, mask=mask,
                           backend="triton")
    ref = qflash_reference(q, k, v, compute_scales(q, k, v, granularity, group, static), bias, mask)
    return out, ref


@pytest.mark.parametrize("n", [1, 49, 50, 197, 257])
@pytest.mark.parametrize("d", [32, 64])
@pytest.mark.parametrize("granularity", ["sample", "batch", "static"])
def test_bit_exact_vit(rng, device, n, d, granularity):
    q, k, v = random_qkv(rng, 2, 2, n, d, device=device)
    static = (0.03, 0.03, 0.02) if granularity == "static" else None  # saturates some values on purpose
    out, ref = kernel_and_reference(q, k, v, granularity, static=static)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert torch.isfinite(out).all()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("n", [49, 50])
@pytest.mark.parametrize("granularity", ["sample", "batch"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_bit_exact_swin_bias_and_mask(rng, device, n, granularity, with_mask):
    windows, images, h, d = 4, 2, 3, 32
    q, k, v = random_qkv(rng, windows * images, h, n, d, device=device)
    bias, mask = swin_bias_and_mask(rng, h, n, windows, device)
    out, ref = kernel_and_reference(q, k, v, granularity, windows, bias, mask if with_mask else None)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("n", [64, 96, 97, 128, 160])  # key tiles: whole, and partial by 32, 33 and 32 keys
@pytest.mark.parametrize("with_bias", [False, True])
def test_bit_exact_for_whole_and_partial_key_tiles(rng, device, n, with_bias):
    windows, h = 2, 2
    q, k, v = random_qkv(rng, windows * 2, h, n, 32, device=device)
    bias, mask = swin_bias_and_mask(rng, h, n, windows, device) if with_bias else (None, None)
    out, ref = kernel_and_reference(q, k, v, "sample", windows, bias, mask)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("n", [16, 17, 90, 209])  # a head's last rows in a 16- or 32-row block, full or not
def test_bit_exact_for_query_tail_blocks(rng, device, n):
    from qflash_kernels.jit.qflash_launch import tail_rows

    assert tail_rows(n) in (16, 32)
    q, k, v = random_qkv(rng, 2, 3, n, 64, device=device)
    out, ref = kernel_and_reference(q, k, v, "sample")
    assert torch.equal(out, ref)


def test_output_storage_makes_timms_reshape_a_view(rng, device):
    # timm's next step after attention is out.transpose(1, 2).reshape(B, N, C): no copy with this layout
    q, k, v = random_qkv(rng, 2, 3, 50, 32, device=device)
    out = qflash_attention(q, k, v, backend="triton")
    merged = out.transpose(1, 2).reshape(2, 50, 3 * 32)
    assert merged.data_ptr() == out.data_ptr()
    assert torch.equal(merged.view(2, 50, 3, 32).transpose(1, 2), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("d", [16, 128])
def test_bit_exact_dtypes_and_head_dims(rng, device, dtype, d):
    q, k, v = random_qkv(rng, 2, 2, 70, d, dtype=dtype, device=device, fused=False)
    out, ref = kernel_and_reference(q, k, v, "sample")
    assert out.dtype == dtype
    assert torch.equal(out, ref)


def test_bit_exact_long_sequence_with_int64_accumulators(rng, device):
    # N above INT32_ACC_MAX_N switches the kernel to int64 accumulators; the reference is int64 always.
    q, k, v = random_qkv(rng, 1, 1, 1100, 32, device=device, spread=0.3)
    out, ref = kernel_and_reference(q, k, v, "sample")
    assert torch.equal(out, ref)


def test_sample_granularity_is_batch_invariant(rng, device):
    q, k, v = random_qkv(rng, 5, 3, 197, 64, device=device)
    batched = qflash_attention(q, k, v, backend="triton")
    for i in (0, 3):
        alone = qflash_attention(q[i : i + 1], k[i : i + 1], v[i : i + 1], backend="triton")
        assert torch.equal(alone[0], batched[i])


def test_batch_granularity_depends_on_the_batch(rng, device):
    q, k, v = random_qkv(rng, 3, 2, 49, 32, device=device)
    k[1] *= 4  # another image with larger keys changes the shared scale
    batched = qflash_attention(q, k, v, granularity="batch", backend="triton")
    alone = qflash_attention(q[:1], k[:1], v[:1], granularity="batch", backend="triton")
    assert not torch.equal(alone[0], batched[0])


def test_zero_and_nonfinite_inputs_match_reference(rng, device):
    q, k, v = random_qkv(rng, 3, 2, 50, 32, device=device, fused=False)
    q[0] = 0.0
    k[1, 1, 7, 3] = float("nan")
    v[2, 0, 0, 0] = float("inf")
    out, ref = kernel_and_reference(q, k, v, "sample")
    assert torch.equal(out.isnan(), ref.isnan())
    assert torch.equal(torch.nan_to_num(out), torch.nan_to_num(ref))
    # image 0 has Q = 0: uniform attention over keys, i.e. the mean of the int8 values
    assert torch.allclose(out[0].float(), v[0].float().mean(dim=1, keepdim=True).expand_as(v[0]), atol=0.02)
    assert out[1].isnan().all() and out[2].isnan().all()


@pytest.mark.parametrize("n", [50, 197])  # quantized on load / K and V by the pass, Q on load
def test_static_scales_quantize_nan_to_zero(rng, device, n):
    q, k, v = random_qkv(rng, 2, 2, n, 32, device=device, fused=False)
    q[0, 1, 3, 4] = float("nan")
    k[1, 0, 7, 0] = float("nan")
    v[1, 1, 9, 31] = float("nan")
    out, ref = kernel_and_reference(q, k, v, "static", static=(0.02, 0.02, 0.02))
    assert not ref.isnan().any()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("n", [50, 197])
def test_scales_from_other_data_clamp_and_zero_nan(rng, device, n):
    # scales handed in, from data with a smaller amax: values past +-127 clamp, NaN quantizes to 0
    q, k, v = random_qkv(rng, 2, 2, n, 32, device=device)
    scales = compute_scales(q * 0.5, k * 0.5, v * 0.5, "sample")
    q[0, 1, 3, 4] = float("nan")
    out = qflash_attention(q, k, v, scales=scales, backend="triton")
    ref = qflash_reference(q, k, v, scales)
    assert not ref.isnan().any()
    assert torch.equal(out, ref)


def test_tiny_tensors_quantize_without_overflow(rng, device):
    # amax < 127 / FLT_MAX: 127 / amax is capped at the largest float instead of becoming inf (0 * inf = NaN)
    q, k, v = random_qkv(rng, 2, 2, 50, 32, dtype=torch.float32, device=device)
    q, k, v = (t * 1e-38 for t in (q, k, v))
    q[:, :, :5] = 0.0
    out, ref = kernel_and_reference(q, k, v, "sample")
    assert not ref.isnan().any() and ref.abs().max() > 0
    assert torch.equal(out, ref)


def test_int8_inputs_match_the_float_path(rng, device):
    q, k, v = random_qkv(rng, 2, 3, 197, 64, device=device)
    static = (0.02, 0.025, 0.015)
    from_float = qflash_attention(q, k, v, granularity="static", static_scales=static, backend="triton")
    scales = compute_scales(q, k, v, "static", static_scales=static)
    ints = [quantize_int8(t, inv).to(torch.int8) for t, inv in ((q, scales.inv_q), (k, scales.inv_k), (v, scales.inv_v))]
    from_int8 = qflash_attention_int8(*ints, static, backend="triton")
    assert torch.equal(from_int8, qflash_attention_int8(*ints, static, backend="reference"))
    assert torch.equal(from_int8, from_float.half())


def test_int8_entry_takes_per_image_tensor_scales_and_is_capturable(rng, device):
    q, k, v = random_qkv(rng, 2, 3, 197, 64, device=device)
    static = (0.02, 0.025, 0.015)
    ints = [quantize_int8(t, torch.full((2,), 1 / s, device=device)).to(torch.int8) for t, s in zip((q, k, v), static)]
    from_floats = qflash_attention_int8(*ints, static, backend="triton")
    per_image = tuple(torch.full((2,), s, device=device) for s in static)
    assert torch.equal(qflash_attention_int8(*ints, per_image, backend="triton"), from_floats)
    mixed = (torch.tensor([0.02, 0.04], device=device), *per_image[1:])
    alone = qflash_attention_int8(*(t[1:] for t in ints), (0.04, 0.025, 0.015), backend="triton")
    assert torch.equal(qflash_attention_int8(*ints, mixed, backend="triton")[1:], alone)
    assert not torch.equal(from_floats[1:], alone)
    if device.type != "cuda":
        return
    for scales in (per_image, static):  # tensor scales, and float ones after a first call
        qflash_attention_int8(*ints, scales)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = qflash_attention_int8(*ints, scales)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, from_floats)


def test_static_float_scales_are_made_on_the_device_and_capturable(rng, device):
    """Float static scales become the same float32 amax as tensor ones, without a host copy: the float-input
    op with static scales runs inside a CUDA graph capture (a host-to-device copy there is an error)."""
    from qflash_kernels.scales import static_amax

    floats = (0.02, 1 / 3, 7e-4)
    as_tensors = tuple(torch.tensor(s, dtype=torch.float32) for s in floats)
    expected = torch.stack([torch.tensor(s, dtype=torch.float32).expand(3) * 127 for s in floats])
    assert torch.equal(static_amax(floats, 3, device).cpu(), expected)
    assert torch.equal(static_amax(as_tensors, 3, device).cpu(), expected)
    if device.type != "cuda":
        return
    q, k, v = random_qkv(rng, 4, 3, 197, 64, device=device)
    eager = qflash_attention(q, k, v, granularity="static", static_scales=floats)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = qflash_attention(q, k, v, granularity="static", static_scales=floats)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, eager)


def test_ties_round_to_even_and_large_values_saturate_in_kernel_and_reference(rng, device):
    """Scale 1 makes x.5 inputs exact ties: the reference (torch.round) and the kernel's magic-number
    rounding must both send them to the even neighbour, on load and in the quantize pass."""
    from qflash_kernels.jit.qflash_launch import launch_qflash
    from qflash_kernels.constants import BIAS_INT_LIMIT
    from qflash_kernels.scales import bias_to_score_units
    from qflash_kernels.jit.quantize import quantize_qkv, v_in_key_order

    ties = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 125.5, 126.5, 127.5, 300.0, -300.0, 3.0])
    assert quantize_int8(ties.view(1, -1), torch.ones(1)).view(-1).tolist() == [
        -2, -2, 0, 0, 2, 2, 126, 126, 127, 127, -127, 3]
    n, d = 40, 16
    q, k, v = (ties[torch.randint(0, len(ties), (2, 2, n, d), generator=rng)].half().to(device) for _ in range(3))
    scales = compute_scales(q, k, v, "static", static_scales=(1.0, 1.0, 1.0))
    q8, k8, v8, v_rows = quantize_qkv(q, k, v, scales)
    for got, x, inv in zip((q8, k8, v_in_key_order(v8, v_rows)), (q, k, v), (scales.inv_q, scales.inv_k, scales.inv_v)):
        assert torch.equal(got.to(torch.int32), quantize_int8(x, inv))

    # bias in score units: inv_c = sqrt(16) / (1 * 1) = 4, so odd multiples of 1/8 are ties
    bias = (torch.randint(-40, 40, (2, n, n), generator=rng) * 2 + 1).float() / 8
    bias[0, :4, :4] = 1e7  # saturates at BIAS_INT_LIMIT
    units = bias_to_score_units(bias.to(device), scales.inv_c[:1])
    assert torch.equal(units.view(2, n, n).cpu().double(), torch.round(bias.double() * 4).clamp(-BIAS_INT_LIMIT, BIAS_INT_LIMIT))
    on_load, prequantized = torch.empty_like(q), torch.empty_like(q)
    launch_qflash(q, k, v, on_load, scales, bias.to(device))
    launch_qflash(q8, k8, v8, prequantized, scales, bias.to(device), v_operand_order=True, v_rows=v_rows)
    ref = qflash_reference(q, k, v, scales, bias.to(device))
    assert torch.equal(on_load, ref) and torch.equal(prequantized, ref)


def test_kernel_quantizing_on_load_equals_prequantized_inputs(rng, device):
    from qflash_kernels.jit.qflash_launch import launch_qflash
    from qflash_kernels.jit.quantize import quantize_qkv

    q, k, v = random_qkv(rng, 2, 3, 197, 64, device=device)
    scales = compute_scales(q, k, v)
    on_load, prequantized = torch.empty_like(q), torch.empty_like(q)
    launch_qflash(q, k, v, on_load, scales)
    q8, k8, v8, v_rows = quantize_qkv(q, k, v, scales)
    launch_qflash(q8, k8, v8, prequantized, scales, v_operand_order=True, v_rows=v_rows)
    assert torch.equal(on_load, prequantized)
    assert torch.equal(prequantized, qflash_reference(q, k, v, scales))



@triton.jit
def _reciprocal_kernel(L, OUT, COUNT: tl.constexpr):
    offs = tl.arange(0, COUNT)
    tl.store(OUT + offs, qflash_arith.reciprocal(tl.load(L + offs)))


def test_row_reciprocal_is_the_exact_integer_quotient(rng, device):
    # the kernel's floor((2**40 + floor(l / 2)) / max(l, 1)) through a float64 quotient and a remainder fix
    one = 1 << 40
    spread = list(range(3, 400_000, 9973))  # row sums of N = 49 .. 197 rows lie in [2**14, 2**22)
    special = [0, 1, 2, 3, 16383, 16384, (1 << 31) - 1, (1 << 30) + 1, 3 * (1 << 20) + 7]
    random_l = torch.randint(1, 1 << 31, (64,), generator=rng).tolist()
    values = (special + spread + random_l)[:128]
    values += [1] * (128 - len(values))
    l = torch.tensor(values, dtype=torch.int32, device=device)
    out = torch.empty(128, dtype=torch.int64, device=device)
    _reciprocal_kernel[(1,)](l, out, COUNT=128)
    assert out.tolist() == [(one + (x >> 1)) // max(x, 1) for x in values]
