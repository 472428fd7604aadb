"""ImageNet validation images, split along timm's line: sources (base.py: the protocol and the --num-samples
selection; folder.py, parquet.py, hub_stream.py: one class each; sources.py: --data to a source) and the
loader (loader.py: decoding, batch slots, workers). Labels are the standard ImageNet-1k class indices."""
from .base import SELECTION_RULE, DataError, ImageSource, Record, Selection
from .folder import FolderSource, imagenet_wnids
from .hub_stream import HubSource
from .loader import Batch, BatchedImageStream, batch_slots, decode_rgb, make_loader, slot_range
from .parquet import ParquetSource
from .sources import open_source

__all__ = [
    "SELECTION_RULE", "Batch", "BatchedImageStream", "DataError", "FolderSource", "HubSource", "ImageSource",
    "ParquetSource", "Record", "Selection", "batch_slots", "decode_rgb", "imagenet_wnids", "make_loader",
    "open_source", "slot_range",
]
