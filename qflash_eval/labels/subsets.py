"""The 200-class ImageNet sets (ImageNet-R, ImageNet-A), scored as timm scores them: the logits restricted to
the set's classes (timm ships their indices), labels left in the 1000-class space (the same Top-1/Top-5 as
timm's mapping into 0..199). Chosen by --valid-labels imagenet-r | imagenet-a | FILE (class indices, one a
line), or detected when a folder's classes are exactly one of the sets."""
from __future__ import annotations

import pathlib
from typing import Optional

SUBSETS = {"imagenet-r": "imagenet_r_indices.txt", "imagenet-a": "imagenet_a_indices.txt"}


def _timm_info(name: str) -> pathlib.Path:
    import timm

    return pathlib.Path(timm.__file__).parent / "data" / "_info" / name


def subset_indices(spec: str) -> list[int]:
    """The class indices of 'imagenet-r', 'imagenet-a' or a FILE of indices 0-999 (one a line), sorted."""
    path = _timm_info(SUBSETS[spec]) if spec in SUBSETS else pathlib.Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--valid-labels {spec}: neither {', '.join(SUBSETS)} nor a file")
    try:
        indices = sorted({int(x) for x in path.read_text().split()})
    except ValueError:
        raise ValueError(f"--valid-labels {spec}: {path} must hold class indices 0-999, one a line") from None
    if not indices or indices[0] < 0 or indices[-1] > 999:
        raise ValueError(f"--valid-labels {spec}: {path} must hold class indices 0-999, one a line")
    return indices


def detect_subset(labels: set) -> Optional[str]:
    """'imagenet-r' or 'imagenet-a' where the labels are exactly that set's 200 classes."""
    for name in SUBSETS:
        if labels == set(subset_indices(name)):
            return name
    return None


def valid_labels_for(spec: Optional[str], source) -> Optional[dict]:
    """The run's restriction of the logits: from --valid-labels, or detected from a folder's classes (a source
    with `labels()`); None for the full 1000 classes. Labels outside the restriction stop the run here."""
    labels = source.labels() if hasattr(source, "labels") else None
    how = "--valid-labels"
    if spec is None:
        spec = detect_subset(labels) if labels is not None else None
        how = "detected: the folder's classes are exactly this set's"
        if spec is None:
            return None
    indices = subset_indices(spec)
    if labels is not None and not labels <= set(indices):
        outside = sorted(labels - set(indices))
        raise ValueError(f"--valid-labels {spec}: {source.describe()} has labels outside its {len(indices)} classes, "
                         f"e.g. {outside[:5]}")
    return {"name": spec, "classes": len(indices), "indices": indices, "how": how}
