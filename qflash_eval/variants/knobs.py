"""The arithmetic's knobs as modes: `qflash(p_bits=8)`, `qflash(p_bits=6,key_tile=32)`, `ivit(output_bits=8)`,
and ranges for a sweep: `qflash(p_bits=4..14)` is eleven modes.

Each knob is a keyword of the mode's reference (and of its public entry); values other than the kernel's own
run the bit-exact reference, and the report records the knobs and the backend that ran."""
from __future__ import annotations

import re

# mode -> {knob: (default, meaning)}; the defaults are the kernels' constants (kernels/constants.py)
KNOBS = {
    "qflash": {"p_bits": (14, "bits of the probabilities (1-14; the paper's 7)"),
               "key_tile": (64, "keys per online-softmax step"),
               "exp_degree": (2, "degree of the integer exp2 polynomial (1-3)"),
               "score_clamp": (21, "doublings below the row max past which scores count as that far (1-21; "
                                   "21: none, keys 21 or more below get 0)")},
    "qflash_paper": {"p_bits": (7, "bits of its int8 probabilities (1-7)"),
                     "key_tile": (32, "keys per online-softmax step (its BLOCK_N)")},
    "ivit": {"output_bits": (16, "bits of the Shiftmax output (I-ViT's Swin: 8)")},
}
PAPER_SETTING = {"qflash": {"p_bits": 7}}  # the published arithmetic's value, marked on sweep charts
_CALL = re.compile(r"^(\w+)\((.*)\)$")


def is_knob_spec(name: str) -> bool:
    m = _CALL.match(name.strip())
    return bool(m and m.group(1) in KNOBS)


def parse_knobs(name: str) -> tuple[str, dict]:
    """'qflash(p_bits=8)' -> ('qflash', {'p_bits': 8}); names the knob or value that is wrong."""
    m = _CALL.match(name.strip())
    if not m or m.group(1) not in KNOBS:
        raise ValueError(f"{name!r}: knobs are given as MODE(name=value, ...) for {', '.join(KNOBS)}")
    base, allowed, knobs = m.group(1), KNOBS[m.group(1)], {}
    for item in filter(None, (part.strip() for part in m.group(2).split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ValueError(f"{name!r}: {base} takes the knobs {', '.join(allowed)} as name=value; got {item!r}")
        try:
            knobs[key] = int(value)
        except ValueError:
            raise ValueError(f"{name!r}: {key} must be an integer, got {value.strip()!r}") from None
    return base, knobs


def expand_ranges(name: str) -> list[str]:
    """'qflash(p_bits=4..14)' -> ['qflash(p_bits=4)', ..., 'qflash(p_bits=14)']; a name without a range as it is."""
    m = _CALL.match(name.strip())
    if not m:
        return [name]
    parts = [p.strip() for p in m.group(2).split(",") if p.strip()]
    ranged = [i for i, p in enumerate(parts) if re.fullmatch(r"\w+=\s*-?\d+\s*\.\.\s*-?\d+", p)]
    if len(ranged) > 1:
        raise ValueError(f"{name!r}: a sweep varies one knob; {len(ranged)} are ranges")
    if not ranged:
        return [name]
    key, _, span = parts[ranged[0]].partition("=")
    low, high = (int(x) for x in span.split(".."))
    if high < low:
        raise ValueError(f"{name!r}: the range {low}..{high} is empty")
    return [f"{m.group(1)}({', '.join(parts[:ranged[0]] + [f'{key.strip()}={x}'] + parts[ranged[0] + 1:])})"
            for x in range(low, high + 1)]


def knob_fields(name: str, base_mode) -> dict:
    """The fields of modes.Mode for 'base(knob=value, ...)', from the base mode's."""
    base, knobs = parse_knobs(name)
    settings = {k: knobs.get(k, default) for k, (default, _) in KNOBS[base].items()}
    changed = {k: v for k, v in settings.items() if v != KNOBS[base][k][0]}
    _check(base, settings)
    attend = _attend_with(base, settings)

    def report_fields(config, device):
        fields = dict(base_mode.report_fields(config, device))
        fields["knobs"] = settings
        fields.update({k: v for k, v in settings.items() if k in fields})  # e.g. key_tile, output_bits
        if base in ("qflash", "qflash_paper") and changed:
            fields["backend"] = f"reference (the kernel fixes {', '.join(KNOBS[base])})"
        return fields

    return {"name": name, "description": f"{base_mode.description}; knobs {settings}",
            "fixed_dtype": base_mode.fixed_dtype, "attend": attend, "report_fields": report_fields,
            "paper_column": base_mode.paper_column}


# each mode's public entry in qflash_kernels, which takes the knobs as keywords
_ENTRIES = {"qflash": "qflash_attention", "qflash_paper": "qflash_paper_attention", "ivit": "ivit_attention"}


def _attend_with(base: str, settings: dict):
    def attend(q, k, v, config, **common):
        import qflash_kernels as qk

        return getattr(qk, _ENTRIES[base])(q, k, v, backend=config.backend, **settings, **common)

    return attend


def _check(base: str, settings: dict) -> None:
    """The references' own checks, before anything is loaded."""
    if base == "qflash":
        from qflash_kernels.reference.qflash import check_knobs

        check_knobs(**settings)
    elif base == "qflash_paper":
        from qflash_kernels.reference.qflash_paper import check_paper_knobs

        check_paper_knobs(**settings)
    else:
        from qflash_kernels.reference.ivit import check_output_bits

        check_output_bits(settings["output_bits"])
