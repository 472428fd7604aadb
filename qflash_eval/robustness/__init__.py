"""One table across the robustness sets: runs of one model on the clean set, ImageNet-V2, -Sketch, -R and -A
(and ReaL, read from the clean run), a row per mode and a column per set (`eval.py compare`)."""
from .sets import SET_ORDER, set_of
from .table import robustness_chart, robustness_rows, robustness_table

__all__ = ["SET_ORDER", "robustness_chart", "robustness_rows", "robustness_table", "set_of"]
