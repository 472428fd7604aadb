"""Labels beyond the one class per image: ReaL (Beyer et al. 2020), the multi-label reassessment of ImageNet's
validation images that ships inside the timm wheel."""
from .real import REAL_SETTINGS, check_real_labels_apply, real_labels_section

__all__ = ["REAL_SETTINGS", "check_real_labels_apply", "real_labels_section"]
