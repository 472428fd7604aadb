"""qflash-eval: ImageNet accuracy of timm vision transformers with integer attention (QFlash, I-ViT).

    from qflash_eval import evaluate_model, swap_attention, AttentionConfig, MODES, RunConfig, __version__

Names are imported on first use, so that `import qflash_eval` (and `eval.py --help`) stays instant.
"""
from __future__ import annotations

from importlib import import_module, metadata

try:
    __version__ = metadata.version("qflash-eval")
except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH
    __version__ = "0+unknown"

_EXPORTS = {
    "evaluate_model": "api",
    "RunConfig": "run_config",
    "swap_attention": "attention_swap",
    "AttentionConfig": "modes",
    "MODES": "modes",
    "ALL_MODES": "modes",
    "create_model": "models",
    "open_source": "data",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
