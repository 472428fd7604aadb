"""An integer mode with some attention layers kept in fp16: `qflash_paper+fp16[3,7]`.

Layers are numbered as the swap meets them (model.modules() order of the swapped attention modules), which is
how diagnose numbers them, for every family (CaiT's class attention after its self-attention layers, the
stages of the multi-stage families in order). `MODE+fp16[auto:K]` is resolved to the K layers that diagnose
ranks worst, on calibration images, before the run (qflash_eval/fallback)."""
from __future__ import annotations

import re

_SPEC = re.compile(r"^(.+)\+fp16\[(.*)\]$")


def is_float_layers_spec(name: str) -> bool:
    return bool(_SPEC.match(name.strip()))


def parse_float_layers(name: str) -> tuple[str, object]:
    """'qflash+fp16[3,7]' -> ('qflash', frozenset({3, 7})); 'qflash+fp16[auto:2]' -> ('qflash', 'auto:2')."""
    m = _SPEC.match(name.strip())
    if not m:
        raise ValueError(f"{name!r}: float layers are given as MODE+fp16[3,7] or MODE+fp16[auto:K]")
    base, inside = m.group(1).strip(), m.group(2).replace(" ", "")
    if inside.startswith("auto:"):
        return base, f"auto:{auto_count(inside, name)}"
    return base, layer_set(inside, name)


def layer_set(text: str, where: str) -> frozenset:
    """'3,7' -> frozenset({3, 7}) ('' -> empty), naming what is wrong."""
    try:
        layers = frozenset(int(x) for x in text.split(",") if x != "")
    except ValueError:
        raise ValueError(f"{where}: float layers are attention-layer indices such as 3,7; got {text!r}") from None
    if any(i < 0 for i in layers):
        raise ValueError(f"{where}: layer indices start at 0; got {sorted(layers)}")
    return layers


def auto_count(text: str, where: str) -> int:
    """'auto:2' -> 2."""
    try:
        k = int(text.partition(":")[2])
    except ValueError:
        raise ValueError(f"{where}: auto takes a count of layers, as auto:2; got {text!r}") from None
    if k < 0:
        raise ValueError(f"{where}: auto:{k} keeps no negative number of layers")
    return k


def float_layers_name(base: str, layers) -> str:
    """The mode name for `layers` of `base` in fp16: qflash_paper+fp16[3,7]."""
    return f"{base}+fp16[{','.join(str(i) for i in sorted(layers))}]"


def float_layers_fields(name: str, base_mode) -> dict:
    """The fields of modes.Mode for 'base+fp16[layers]' (explicit layers; auto is resolved before)."""
    base, layers = parse_float_layers(name)
    if isinstance(layers, str):
        raise ValueError(f"{name}: auto layers are chosen on calibration images by the run "
                         "(--float-layers auto:K or eval.py fallback), not by the mode list")

    def report_fields(config, device):
        fields = dict(base_mode.report_fields(config, device))
        fields["float_layers"] = sorted(layers)
        fields["integer_mode"] = base
        return fields

    return {"name": name, "description": f"{base_mode.description}; attention layers {sorted(layers)} in fp16 "
            "(PyTorch SDPA)", "fixed_dtype": base_mode.fixed_dtype, "attend": base_mode.attend,
            "report_fields": report_fields, "paper_column": base_mode.paper_column, "float_layers": layers}

