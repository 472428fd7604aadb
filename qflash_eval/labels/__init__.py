"""Labels beyond the one class per image: ReaL (Beyer et al. 2020), the multi-label reassessment of ImageNet's
validation images that ships inside the timm wheel, the 200-class sets (ImageNet-R, -A), --class-map, and the
check that the data's classes are the model's."""
from .class_map import load_class_map
from .real import REAL_SETTINGS, check_real_labels_apply, real_labels_section
from .space import check_label_space
from .subsets import SUBSETS, detect_subset, subset_indices, valid_labels_for

__all__ = ["REAL_SETTINGS", "SUBSETS", "check_label_space", "check_real_labels_apply", "detect_subset",
           "load_class_map", "real_labels_section", "subset_indices", "valid_labels_for"]
