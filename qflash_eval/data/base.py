"""What every image source is: an ordered sequence of records (index 0..size-1, encoded image, label),
readable for any set of indices, and the --num-samples selection that every source shares."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol

SELECTION_RULE = "evenly spaced: image floor(i * size / N) of the source for i = 0..N-1"


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    index: int  # position in the evaluated sequence, 0..N-1
    name: str  # file path, or "<parquet file or dataset>#<row>"
    payload: object  # a path (folder) or bytes (parquet, hub)
    label: int
    error: Optional[str] = None  # why this item cannot be used (then payload and label are meaningless)


class ImageSource(Protocol):
    """A source of ImageNet records (FolderSource, ParquetSource, HubSource)."""

    kind: str  # folder | parquet | hub
    location: str
    split: Optional[str]
    size: Optional[int]  # images evaluated; None for a hub stream of unknown length
    source_size: Optional[int]  # images the source holds
    selection: str  # "all", or the --num-samples rule

    def records(self, wanted: Optional[range] = None,
                keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        """The records with index in `wanted` (all when None) and keep(index) true, in index order."""

    def describe(self) -> str:
        """kind:location, as reports and --resume name the source."""


def describe(source: ImageSource) -> str:
    return f"{source.kind}:{source.location}" + (f" (split {source.split})" if source.kind == "hub" else "")


@dataclass(frozen=True)
class Selection:
    """--num-samples N of a source of `size` items: positions floor(i * size / N), the same images whatever
    the process and worker layout; all of them without N."""

    size: int
    limit: Optional[int] = None

    @classmethod
    def of(cls, size: int, limit: Optional[int], where: str) -> "Selection":
        check_num_samples(limit, size, where)
        return cls(size, limit)

    @property
    def positions(self) -> Optional[list[int]]:
        if self.limit is None or self.limit == self.size:
            return None
        return [i * self.size // self.limit for i in range(self.limit)]

    @property
    def count(self) -> int:
        return self.size if self.limit is None else self.limit

    def describe(self) -> str:
        return "all" if self.limit is None or self.limit == self.size else f"{self.limit} of {self.size}, {SELECTION_RULE}"

    def rows(self, ordinals: list[int]) -> list[int]:
        """Source positions of the selected indices `ordinals`."""
        positions = self.positions
        return ordinals if positions is None else [positions[i] for i in ordinals]


def check_num_samples(n: Optional[int], size: Optional[int], where: str) -> None:
    if n is not None and n < 1:
        raise DataError(f"--num-samples must be at least 1 (got {n})")
    if n is not None and size is not None and n > size:
        raise DataError(f"--num-samples {n} is more than the {size} images of {where}")


def indices(wanted: Optional[range], size: int, keep: Optional[Callable[[int], bool]]) -> list[int]:
    """The indices of `wanted` (all of 0..size-1 when None) that keep() takes."""
    return [i for i in (wanted if wanted is not None else range(size)) if keep is None or keep(i)]
