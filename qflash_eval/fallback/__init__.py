"""From diagnosis to a choice: which attention layers to keep in fp16 so that an integer mode gets its accuracy
back. `--float-layers auto:K` and `eval.py fallback` rank the layers on calibration images that the evaluation
never sees (calibration.py, rank.py); the float-layer modes themselves are qflash_eval/variants/float_layers.py."""
from .calibration import calibration_images
from .rank import rank_layers, resolve_auto_float_layers

__all__ = ["calibration_images", "rank_layers", "resolve_auto_float_layers"]
