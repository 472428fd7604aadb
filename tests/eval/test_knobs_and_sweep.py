"""The arithmetic's knobs as modes (`qflash(p_bits=8)`, `ivit(output_bits=8)`) and `eval.py sweep`; the names of
knob and float-layer modes checked."""
import json

import pytest
import torch

import qflash_kernels as qk
from conftest import DEIT_TINY_WEIGHTS, SAMPLE_IMAGES
from qflash_eval import modes
from qflash_eval.modes import AttentionConfig
from qflash_eval.variants import expand_ranges, parse_knobs


def _qkv(seed, shape=(2, 3, 77, 64)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * s for s in (1.5, 1.5, 1.0)]


def test_default_knobs_are_the_modes_own_bits(clean_modes):
    full = "qflash(p_bits=14, key_tile=64, exp_degree=2, score_clamp=21)"
    modes.parse_modes(f"{full},ivit(output_bits=16),qflash_paper(p_bits=7, key_tile=32)")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the kernels on a GPU, the references on a CPU
    q, k, v = [t.to(device).half() for t in _qkv(1)]
    for base, knobs in (("qflash", full), ("ivit", "ivit(output_bits=16)"),
                        ("qflash_paper", "qflash_paper(p_bits=7, key_tile=32)")):
        cfg = AttentionConfig(base)
        assert torch.equal(modes.MODES[knobs].attend(q, k, v, cfg), modes.MODES[base].attend(q, k, v, cfg))


@pytest.mark.parametrize("attention, bits, spread, slack", [
    (qk.qflash_attention, range(2, 15), 20, 0.05),  # 2 bits are far worse than 14
    # its int8 probabilities (1-7 bits); its int8 output bounds it near 7 bits, where a step may lose 0.1 dB
    (qk.qflash_paper_attention, range(2, 8), 10, 0.2),
])
def test_probability_bits_trade_accuracy_monotonically(attention, bits, spread, slack):
    q, k, v = _qkv(2)
    exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    curve = [float(10 * torch.log10(exact.pow(2).sum() / (attention(q, k, v, p_bits=b).double() - exact).pow(2).sum()))
             for b in bits]
    assert all(b >= a - slack for a, b in zip(curve, curve[1:])), curve
    assert curve[-1] - curve[0] > spread


def test_exp_degree_sets_the_exponentials_error():
    from qflash_kernels.reference.qflash import exp2_split

    d = torch.arange(0, 1 << 12, dtype=torch.int64)  # every fraction step of one doubling (exp_mul 2**14)
    mul, dlim = torch.tensor(1 << 14), torch.tensor(1 << 40)
    exact = torch.exp2(-(d * (1 << 14)).double() / 2**26)
    errors = []
    for degree in (1, 2, 3):
        frac, whole = exp2_split(d, mul, dlim, degree)
        assert (whole == 0).all() and frac.min() >= 2**14 and frac.max() <= 2**15 - 2
        errors.append(float((frac.double() / 2**15 / exact - 1).abs().max()))
    # the fits' relative errors (constants.EXP_POLY), plus up to three units of frac (>= 2**14) from the
    # products' truncated high halves
    assert errors[0] < 0.039 and errors[1] < 0.0021 + 3 * 2**-14 and errors[2] < 0.0001 + 3 * 2**-14, errors
    assert errors[0] > 10 * errors[1] > 10 * errors[2]
    q, k, v = _qkv(5)
    exact_out = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    sqnr = [float(10 * torch.log10(exact_out.pow(2).sum() / (qk.qflash_attention(
        q, k, v, exp_degree=g).double() - exact_out).pow(2).sum())) for g in (1, 2, 3)]
    assert sqnr[0] + 3 < sqnr[1] <= sqnr[2] + 0.1, sqnr


def test_score_clamp_counts_far_keys_as_that_far_and_keeps_masked_keys_at_zero():
    q, k, v = _qkv(6, (1, 2, 40, 64))
    k[..., :5, :] *= -6  # five keys far below the row max for most queries
    default = qk.qflash_attention(q, k, v)
    assert torch.equal(qk.qflash_attention(q, k, v, score_clamp=21), default)
    # clamped at one doubling every key weighs at least half the top one: the output moves toward V's mean
    mean_v = v.mean(dim=2, keepdim=True)
    assert (qk.qflash_attention(q, k, v, score_clamp=1) - mean_v).norm() < 0.7 * (default - mean_v).norm()
    # a key masked out (additive -inf) still weighs 0 under a clamp: the same bits as leaving it out (one key
    # tile holds all 40 keys, and static scales keep the int8 values of the others)
    mask = torch.zeros(1, 40, 40)
    mask[..., 7] = float("-inf")
    keep = [i for i in range(40) if i != 7]
    static = {"granularity": "static", "static_scales": (0.05, 0.05, 0.03)}
    for clamp in (2, 21):
        masked = qk.qflash_attention(q, k, v, mask=mask, score_clamp=clamp, **static)
        dropped = qk.qflash_attention(q, k[:, :, keep], v[:, :, keep], score_clamp=clamp, **static)
        assert torch.equal(masked, dropped), clamp


def test_the_knob_table_holds_the_entries_own_defaults():
    # variants/knobs.py keeps the defaults without importing the kernels (eval.py --help starts without torch)
    import inspect

    from qflash_eval.variants.knobs import _ENTRIES, KNOBS

    for base, knobs in KNOBS.items():
        signature = inspect.signature(getattr(qk, _ENTRIES[base]))
        assert {k: default for k, (default, _) in knobs.items()} == {
            k: signature.parameters[k].default for k in knobs}, base


def test_the_papers_key_tile_default_is_its_own():
    q, k, v = _qkv(4)
    assert torch.equal(qk.qflash_paper_attention(q, k, v, key_tile=32, backend="reference"),
                       qk.qflash_paper_attention(q, k, v, backend="reference"))
    assert not torch.equal(qk.qflash_paper_attention(q, k, v, key_tile=64), qk.qflash_paper_attention(q, k, v))


def test_a_changed_knob_runs_the_reference_and_the_report_says_so(clean_modes):
    modes.parse_modes("qflash(p_bits=7)")
    fields = modes.MODES["qflash(p_bits=7)"].report_fields(AttentionConfig("qflash"), torch.device("cpu"))
    assert fields["knobs"] == {"p_bits": 7, "key_tile": 64, "exp_degree": 2, "score_clamp": 21}
    assert fields["backend"].startswith("reference")
    q, k, v = _qkv(3)
    seven = qk.qflash_attention(q, k, v, p_bits=7, backend="triton")  # the knob overrides the backend
    assert torch.equal(seven, qk.qflash_attention(q, k, v, p_bits=7, backend="reference"))
    assert not torch.equal(seven, qk.qflash_attention(q, k, v, backend="reference"))


@pytest.mark.parametrize("text, message", [
    ("qflash(pbits=8)", "takes the knobs p_bits, key_tile, exp_degree, score_clamp"),
    ("qflash(exp_degree=4)", "exp_degree must be one of 1, 2, 3"),
    ("qflash(score_clamp=22)", "score_clamp must be an integer from 1 to 21"),
    ("qflash(p_bits=eight)", "p_bits must be an integer"),
    ("qflash(p_bits=15)", "from 1 to 14"),
    ("qflash(key_tile=0)", "key_tile must be a positive integer"),
    ("ivit(output_bits=1)", "output_bits must be in"),
    ("qflash_paper(p_bits=8)", "from 1 to 7"),
    ("qflash+fp16[x]", "attention-layer indices"),
    ("qflash+fp16[-1]", "start at 0"),
    ("fp32+fp16[1]", "not an integer mode"),
])
def test_bad_knobs_and_float_layers_are_named(clean_modes, text, message):
    with pytest.raises(ValueError, match=message):
        modes.parse_modes(text)


def test_ranges_expand_one_knob():
    assert expand_ranges("qflash(p_bits=4..6, key_tile=32)") == [
        "qflash(p_bits=4, key_tile=32)", "qflash(p_bits=5, key_tile=32)", "qflash(p_bits=6, key_tile=32)"]
    assert expand_ranges("qflash(p_bits=8)") == ["qflash(p_bits=8)"]
    with pytest.raises(ValueError, match="one knob"):
        expand_ranges("qflash(p_bits=4..6, key_tile=16..32)")
    assert parse_knobs("qflash(p_bits=5, key_tile=32)") == ("qflash", {"p_bits": 5, "key_tile": 32})


@pytest.mark.slow
def test_sweep_writes_its_table_and_chart(tmp_path, clean_modes):
    from qflash_eval.cli import main

    out = tmp_path / "s.json"
    assert main(["sweep", "-m", "DeiT-T", "--checkpoint", str(DEIT_TINY_WEIGHTS), "--data", str(SAMPLE_IMAGES),
                 "--mode", "qflash(p_bits=5..6)", "--num-samples", "6", "-b", "6", "--results", str(out),
                 "--no-progress"]) == 0
    table = json.loads((tmp_path / "s.sweep.json").read_text())
    assert [r["p_bits"] for r in table["rows"]] == [5, 6] and table["default"] == 14 and table["paper"] == 7
    assert all(r["count"] == 6 and r["top1_ci95"][0] <= r["top1"] <= r["top1_ci95"][1] for r in table["rows"])
    assert table["rows"][1]["sqnr_first_layers_db"] > table["rows"][0]["sqnr_first_layers_db"]
    assert (tmp_path / "s.sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 5 |" in (tmp_path / "s.sweep.md").read_text()
    assert json.loads(out.read_text())["results"]["qflash(p_bits=6)"]["knobs"]["p_bits"] == 6
