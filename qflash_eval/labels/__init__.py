"""Labels beyond the one class per image: ReaL (Beyer et al. 2020), the multi-label reassessment of ImageNet's
validation images that ships inside the timm wheel, and the 200-class sets (ImageNet-R, -A)."""
from .real import REAL_SETTINGS, check_real_labels_apply, real_labels_section
from .subsets import SUBSETS, detect_subset, subset_indices, valid_labels_for

__all__ = ["REAL_SETTINGS", "SUBSETS", "check_real_labels_apply", "detect_subset", "real_labels_section",
           "subset_indices", "valid_labels_for"]
