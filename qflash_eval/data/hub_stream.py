"""A Hugging Face hub dataset, streamed; offline or gated, a message that names --data and HF_TOKEN."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from ..hub import HubUnavailableError, go_offline_if_unreachable
from .arrow import label_column, records_from_arrow
from .base import Record, Selection, check_num_samples, describe, indices


class HubSource:
    kind = "hub"

    def __init__(self, dataset_id: str, split: str, limit: Optional[int] = None):
        self.location, self.split, self.limit = dataset_id, split, limit
        self.stream = open_stream(dataset_id, split)
        features = getattr(self.stream, "features", None) or {}
        self.column = label_column(features) or "label"  # a 'wnid' column: ImageNet-R / -A as published
        splits = getattr(self.stream.info, "splits", None) or {}
        total = splits[split].num_examples if split in splits and splits[split].num_examples else None
        check_num_samples(limit, total, f"{dataset_id} (split {split})")
        self.chosen = Selection(total, limit) if total else None
        self.size = limit if limit else total
        self.source_size = total
        self.selection = self.chosen.describe() if self.chosen else (
            f"the first {limit} (stream of unknown size)" if limit else "all")

    def records(self, wanted: Optional[range] = None, keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        if self.chosen is not None:
            ordinals = indices(wanted, self.size, keep)
            yield from records_from_arrow(self.stream, self.location, self.chosen.rows(ordinals), ordinals, 0,
                                          column=self.column)
        else:  # unknown length: every row below the limit that keep() takes
            yield from records_from_arrow(self.stream, self.location, None, None, 0, self.limit, keep,
                                          column=self.column)

    def describe(self) -> str:
        return describe(self)


def open_stream(dataset_id: str, split: str):
    import datasets

    online = go_offline_if_unreachable()
    try:
        stream = datasets.load_dataset(dataset_id, split=split, streaming=True)
        return stream.cast_column("image", datasets.Image(decode=False))
    except Exception as err:  # noqa: BLE001
        text = f"{type(err).__name__}: {err}"
        if not online:
            hint = "the Hugging Face hub cannot be reached (offline)"
        elif "gated" in text.lower() or "401" in text or "403" in text:
            hint = (f"{dataset_id} is gated: accept its terms on the hub, then `huggingface-cli login` "
                    "or set HF_TOKEN")
        else:
            hint = f"loading {dataset_id} (split {split}) failed: {text[:300]}"
        raise HubUnavailableError(
            f"{hint}. No local path {dataset_id!r} exists either. To evaluate local data pass --data "
            "with an ImageNet folder or parquet files."
        ) from err
