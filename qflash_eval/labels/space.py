"""The data's label space against the model's: ImageNet-1k's 1000 classes (folders, parquet and hub sets
give labels 0-999; --class-map may give others) must fit the classes the model predicts. Checked before the
model is loaded, from timm's pretrained config."""
from __future__ import annotations

from typing import Optional


def model_classes(timm_name: str) -> Optional[int]:
    """The classes timm's pretrained config of `timm_name` predicts (None where timm does not say)."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(timm_name)
    except (RuntimeError, ValueError):
        return None
    return getattr(cfg, "num_classes", None) if cfg is not None else None


def check_label_space(timm_name: str, source, classes: Optional[int] = None, class_mapped: bool = False) -> None:
    """A ValueError naming the data and the model where the data's labels are not the model's classes.

    classes: the model's number of classes where it is already built (else from timm's config);
    class_mapped: the labels come through --class-map (they need only be below the model's classes)."""
    classes = classes if classes is not None else model_classes(timm_name)
    if classes is None:
        return
    labels = source.labels() if hasattr(source, "labels") else None
    largest = max(labels) if labels else None
    if classes == 0:
        raise ValueError(f"model {timm_name} has no classifier head (num_classes 0: a feature extractor); "
                         f"{source.describe()} needs one of ImageNet-1k's 1000 classes")
    if classes != 1000 and not class_mapped:
        raise ValueError(f"{source.describe()} is labelled in ImageNet-1k's 1000 classes, but model {timm_name} "
                         f"predicts {classes}: pick its ImageNet-1k fine-tuned weights (a tag ending in _in1k), or "
                         "map the data's classes into the model's with --class-map")
    if largest is not None and largest >= classes:
        raise ValueError(f"{source.describe()} has labels up to {largest}, but model {timm_name} predicts "
                         f"{classes} classes (0-{classes - 1})")
