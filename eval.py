"""ImageNet evaluation of timm vision transformers with integer attention. See README.md."""
import sys

from qflash_eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
