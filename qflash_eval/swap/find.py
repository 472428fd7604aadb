"""Finding a model's attention modules and deciding, by the registry, whether the integer modes can run."""
from __future__ import annotations

from typing import NamedTuple

from torch import nn

from .registry import REFUSED, SUPPORTED, Support, class_key, looks_like_attention


class UnsupportedAttentionError(ValueError):
    pass


class AttentionSurvey(NamedTuple):
    targets: list  # (module name, module, Support) for every attention module to swap
    refused: list  # "name (Class): reason" for every attention the integer modes cannot take

    @property
    def runs_integer(self) -> bool:
        return bool(self.targets) and not self.refused

    def why_not(self) -> str:
        if self.refused:
            shown = "; ".join(self.refused[:3]) + (f"; and {len(self.refused) - 3} more" if len(self.refused) > 3 else "")
            return f"holds attention that cannot be made integer: {shown}"
        return "no softmax attention module found (nothing to make integer)"


def survey(model: nn.Module) -> AttentionSurvey:
    """Every attention module of the model: the registry's supported classes are targets; a refused class,
    or an unknown class that looks like attention (its name) outside and not around a target, is refused."""
    modules = list(model.named_modules())
    targets = [(name, m, SUPPORTED[class_key(m)]) for name, m in modules if class_key(m) in SUPPORTED]
    target_names = [name for name, _, _ in targets]
    refused, seen = [], set()
    for name, m in modules:
        key = class_key(m)
        if key in SUPPORTED:
            continue
        inside = any(name.startswith(t + ".") for t in target_names if t)
        around = any(t.startswith(name + ".") or not name for t in target_names)
        if key in REFUSED and not inside:
            reason = REFUSED[key].reason
        elif looks_like_attention(m) and not inside and not around:
            reason = "a module timm names attention that this tool does not know (not verified as softmax attention)"
        else:
            continue
        if key not in seen:  # one line per class
            seen.add(key)
            refused.append(f"{name} ({type(m).__name__}): {reason}")
    return AttentionSurvey(targets, refused)


def support_line(support: Support) -> str:
    return f"{support.families}: {support.attention}"
