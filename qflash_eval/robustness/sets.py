"""Which evaluation set a saved run scored: the 200-class restriction it recorded (ImageNet-R, -A: a run of
those images without it was not scored as their users score them, so a name alone never makes one), else the
data source's name (ImageNetV2's and ImageNet-Sketch's folders and hub ids name themselves), else the clean
validation set. `eval.py compare --set RUN=SET` overrides the guess."""
from __future__ import annotations

import re

SET_ORDER = ("clean", "ReaL", "V2", "Sketch", "R", "A")
_BY_SUBSET = {"imagenet-r": "R", "imagenet-a": "A"}
_BY_NAME = (  # checked in order on the data source's description, lower case
    ("V2", re.compile(r"imagenet[-_ ]?v2|\bv2\b|matched[-_]frequency|threshold0\.7|top[-_]images")),
    ("Sketch", re.compile(r"sketch")),
)


def set_of(report: dict) -> str:
    """'clean', 'V2', 'Sketch', 'R' or 'A' for a results file's run."""
    subset = (report.get("valid_labels") or {}).get("name")
    if subset in _BY_SUBSET:
        return _BY_SUBSET[subset]
    source = str(report.get("data", {}).get("source", "")).lower()
    for name, pattern in _BY_NAME:
        if pattern.search(source):
            return name
    return "clean"
