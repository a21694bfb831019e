"""A ReID dataset is three plain lists of image records: train, query and gallery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    path: str  # absolute path of the image file
    pid: int  # person id; train pids are relabelled to 0..num_train_pids-1
    camid: int  # 0-based camera id
    occluded: bool | None = None  # where the dataset says
    # What occludes the person, where the dataset says (SynthOcc: vehicle, pole, board, person, clutter, or
    # "none" for an unoccluded image); evaluation reports metrics per type of query (docs/evaluation.md).
    occluder_type: str | None = None


@dataclass
class ReidDataset:
    name: str
    root: Path
    train: list[ImageRecord] = field(default_factory=list)
    query: list[ImageRecord] = field(default_factory=list)
    gallery: list[ImageRecord] = field(default_factory=list)
    # What a run records about how the loader read the data (`folder`: identity names -> ids, an automatic
    # split); written to the run folder's dataset.json.
    notes: dict = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    def relpath(self, record: ImageRecord) -> str:
        """The record's path relative to the dataset root (the key of the keypoint store)."""
        return Path(record.path).relative_to(self.root).as_posix()

    def split_stats(self) -> dict[str, tuple[int, int, int]]:
        """split -> (identities, images, cameras)."""
        return {
            name: (len({r.pid for r in recs}), len(recs), len({r.camid for r in recs}))
            for name, recs in (("train", self.train), ("query", self.query), ("gallery", self.gallery))
        }

    def summary(self) -> str:
        lines = [
            f"Dataset {self.name} at {self.root}",
            f"  {'split':<8}| {'# ids':>7} | {'# images':>9} | {'# cameras':>9}",
        ]
        lines.append("  " + "-" * 44)
        for name, (ids, images, cams) in self.split_stats().items():
            lines.append(f"  {name:<8}| {ids:>7} | {images:>9} | {cams:>9}")
        return "\n".join(lines)
