"""The gallery of tracks (index format version 3): one entry per person track of a camera recording.

    index = TrackIndex.load("gallery.npz")
    total, rows = index.list_tracks(offset=0, limit=50)     # camera, track, first/last frame, seconds, crops
    index.thumbnail("cam1", 3)                              # JPEG bytes; index.crops("cam1", 3): a list

An entry keeps its camera, track id, first and last frame, time span in seconds (None without a frame
rate), its feature (fp16: the mean of its crops' L2-normalised features, L2-normalised again, `pool`) and up
to K sampled crops: each crop's frame, box and a small JPEG; one of them is the thumbnail. The crops'
features (fp16) are kept only when asked (`index build --crop-features`): max-over-crops re-scoring needs
them, and at 1280-d they are K times the size of the entry features (2 GB for 100k tracks at K = 8).
Distances are cosine distances, 1 - cos.

File (.npz, uncompressed, written atomically): `header` (JSON: version 3, kind "tracks", meta, cameras) and
columns: camera_code, track, first_frame, last_frame, seconds (N, 2; NaN when unknown), thumb (N),
entry_features (N, D) float16, crop_start (N+1), crop_features (M, D) float16 or (0, D) when not kept,
crop_frame (M), crop_box (M, 4) left/top/width/height, jpeg_start (M+1) and jpegs (bytes). Version 2 files
(crop features always, no entry features) still load; their entries are pooled when first searched.
docs/recordings.md describes it.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError, npz_problem
from occreid.utils.files import atomic_write

INDEX_VERSION = 3
READABLE_VERSIONS = (2, 3)
COLUMNS = ("camera_code", "track", "first_frame", "last_frame", "seconds", "thumb", "entry_features")
CROP_COLUMNS = ("crop_frame", "crop_box")
NO_CROP_FEATURES = (
    "this index keeps no crop features (max-over-crops re-scoring needs them): rebuild it with "
    "`occreid index build --crop-features ...`, or search with --rescore mean"
)


def _mapped_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed .npz (as np.savez writes) memory-mapped read-only, not read: a large
    index opens at once and its pages are read when used. Raises ValueError for anything else."""
    from numpy.lib import format as npy

    out = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{info.filename} is compressed or not an array")
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad zip entry")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = npy.read_magic(fh)
            reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = reader(fh)
            if dtype.hasobject:
                raise ValueError("object arrays are never loaded")
            name = info.filename[: -len(".npy")]
            if not int(np.prod(shape)):
                out[name] = np.zeros(shape, dtype)
                continue
            order = "F" if fortran else "C"
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order=order)
    return out


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + length) for each pair, without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not lengths.sum():
        return np.zeros(0, np.int64)
    shift = np.asarray(starts, dtype=np.int64) - np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.repeat(shift, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


class UnknownTrackError(OccreidError):
    """A camera or track id the index does not hold."""


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (float32)."""
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def pool(crop_features: np.ndarray, crop_start: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Entry features (N, D): per entry, the mean of its L2-normalised crop features, L2-normalised again.
    Entry i owns crop rows crop_start[i]:crop_start[i + 1] (at least one). Works in chunks of entries, so a
    large fp16 index is never expanded to float32 at once (torch: its fp16 conversion and index_add are
    about 3x faster than numpy's here)."""
    import torch
    from torch.nn.functional import normalize

    n = len(crop_start) - 1
    out = np.zeros((n, crop_features.shape[1] if crop_features.ndim == 2 else 0), dtype=np.float32)
    counts = torch.from_numpy(np.diff(crop_start).astype(np.int64))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        lo, hi = int(crop_start[a]), int(crop_start[b])
        block = normalize(torch.from_numpy(np.array(crop_features[lo:hi])).float(), dim=1)  # a writable copy
        owner = torch.repeat_interleave(torch.arange(b - a), counts[a:b])
        sums = torch.zeros(b - a, block.shape[1]).index_add_(0, owner, block)
        out[a:b] = normalize(sums, dim=1).numpy()
    return out


@dataclass
class TrackIndex:
    """Columns of N track entries and their M crops (see the module docstring)."""

    meta: dict[str, Any] = field(default_factory=dict)
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> fps, tracks file, source
    camera_code: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    track: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    first_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seconds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float64))
    thumb: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # crop row of the thumbnail
    entry_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    crop_start: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    crop_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    crop_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    crop_box: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    jpeg_start: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    jpegs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    def __post_init__(self) -> None:
        self._features: np.ndarray | None = None
        self._rows: dict[tuple[str, int], int] | None = None
        self.search_cache: dict[str, Any] = {}  # backends keep their prepared gallery here

    def __len__(self) -> int:
        return len(self.track)

    @property
    def dim(self) -> int:
        return int(self.entry_features.shape[1]) if self.entry_features.ndim == 2 else 0

    @property
    def keeps_crop_features(self) -> bool:
        return len(self.crop_frame) > 0 and len(self.crop_features) == len(self.crop_frame)

    @property
    def camera_names(self) -> list[str]:
        return list(self.cameras)

    @property
    def features(self) -> np.ndarray:
        """(N, D) float32 entry features, converted once."""
        if self._features is None:
            self._features = np.asarray(self.entry_features, dtype=np.float32)
        return self._features

    def row(self, camera: str, track: int) -> int:
        """The entry of (camera, track); UnknownTrackError when there is none."""
        if self._rows is None:
            names = self.camera_names
            self._rows = {(names[c], int(t)): i for i, (c, t) in enumerate(zip(self.camera_code, self.track))}
        found = self._rows.get((str(camera), int(track)))
        if found is None:
            if camera not in self.cameras:
                known = ", ".join(self.cameras) or "none"
                raise UnknownTrackError(f"the index holds no camera {camera!r} (cameras: {known})")
            raise UnknownTrackError(f"camera {camera!r} has no track {track} in the index")
        return found

    def entry(self, row: int) -> dict[str, Any]:
        """What search results and the gallery list show of one entry."""
        start, end = self.seconds[row]
        return {
            "camera": self.camera_names[int(self.camera_code[row])],
            "track": int(self.track[row]),
            "first_frame": int(self.first_frame[row]),
            "last_frame": int(self.last_frame[row]),
            "seconds": None if np.isnan(start) else [round(float(start), 3), round(float(end), 3)],
            "crops": int(self.crop_start[row + 1] - self.crop_start[row]),
        }

    def list_tracks(self, offset: int = 0, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """(number of entries, the entries offset..offset+limit-1), in index order."""
        if offset < 0 or limit < 0:
            raise OccreidError(f"offset and limit must be >= 0, got {offset} and {limit}")
        return len(self), [self.entry(i) for i in range(offset, min(len(self), offset + limit))]

    def _jpeg(self, crop: int) -> bytes:
        return self.jpegs[int(self.jpeg_start[crop]) : int(self.jpeg_start[crop + 1])].tobytes()

    def thumbnail(self, camera: str, track: int) -> bytes:
        """The entry's thumbnail, JPEG bytes (one of its crops: the tallest, most confident and visible)."""
        return self._jpeg(int(self.thumb[self.row(camera, track)]))

    def crops(self, camera: str, track: int) -> list[bytes]:
        """The entry's sampled crops in time order, JPEG bytes each."""
        row = self.row(camera, track)
        return [self._jpeg(c) for c in range(int(self.crop_start[row]), int(self.crop_start[row + 1]))]

    def crop_rows(self, row: int) -> np.ndarray:
        """(k, D) float32 L2-normalised crop features of entry `row`."""
        if not self.keeps_crop_features:
            raise OccreidError(NO_CROP_FEATURES)
        return normalise(self.crop_features[int(self.crop_start[row]) : int(self.crop_start[row + 1])])

    def without_camera(self, camera: str) -> TrackIndex:
        """A copy without `camera`'s entries (and without the camera)."""
        code = self.camera_names.index(camera)
        keep = np.flatnonzero(self.camera_code != code)
        part = self.select(keep)
        part.cameras = {k: v for k, v in self.cameras.items() if k != camera}
        part.camera_code = np.where(part.camera_code > code, part.camera_code - 1, part.camera_code)
        return part

    def select(self, rows: np.ndarray) -> TrackIndex:
        """A copy with only these entries (in this order) and their crops."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.crop_start)[rows]
        crops = concat_ranges(self.crop_start[rows], counts)
        sizes = np.diff(self.jpeg_start)[crops]
        new_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        thumb_offset = self.thumb[rows] - self.crop_start[rows]
        return replace(
            self,
            **{name: getattr(self, name)[rows] for name in COLUMNS if name != "thumb"},
            thumb=new_start[:-1] + thumb_offset,
            crop_start=new_start,
            **{name: getattr(self, name)[crops] for name in CROP_COLUMNS},
            crop_features=self.crop_features[crops] if self.keeps_crop_features else self.crop_features,
            jpeg_start=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            jpegs=np.asarray(self.jpegs[concat_ranges(self.jpeg_start[crops], sizes)], dtype=np.uint8),
        )

    def extend(self, other: TrackIndex) -> TrackIndex:
        """This index followed by `other`'s entries (cameras must not repeat; features of equal dimension)."""
        if len(self) and len(other) and self.dim != other.dim:
            raise OccreidError(f"the index holds {self.dim}-d features; cannot add {other.dim}-d ones")
        clash = set(self.cameras) & set(other.cameras)
        if clash:
            raise OccreidError(f"camera {sorted(clash)[0]!r} is already in the index")
        if len(self) and len(other) and self.keeps_crop_features != other.keeps_crop_features:
            raise OccreidError("one index keeps crop features and the other does not; they cannot be merged")
        merged = replace(self, cameras={**self.cameras, **other.cameras})
        n_crops, n_bytes = len(self.crop_frame), int(self.jpeg_start[-1])
        for name in COLUMNS + CROP_COLUMNS + ("crop_features", "jpegs"):
            ours, theirs = getattr(self, name), getattr(other, name)
            if ours.ndim == 2 and not len(ours):
                ours = ours.reshape(0, theirs.shape[1])
            extra = {"camera_code": len(self.cameras), "thumb": n_crops}.get(name, 0)
            setattr(merged, name, np.concatenate([ours, theirs + extra if extra else theirs]))
        merged.crop_start = np.concatenate([self.crop_start, other.crop_start[1:] + n_crops])
        merged.jpeg_start = np.concatenate([self.jpeg_start, other.jpeg_start[1:] + n_bytes])
        return merged

    def save(self, path: str | Path) -> Path:
        """Write the index to one .npz file, atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            raise OccreidError(f"index file {path} must end in .npz")
        header = {"version": INDEX_VERSION, "kind": "tracks", "meta": self.meta, "cameras": self.cameras}
        names = COLUMNS + CROP_COLUMNS + ("crop_start", "crop_features")
        arrays = {name: getattr(self, name) for name in names}
        with atomic_write(path) as fh:
            np.savez(
                fh,
                header=np.asarray(json.dumps(header)),
                jpeg_start=self.jpeg_start,
                jpegs=self.jpegs,
                **arrays,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrackIndex:
        """Open an index written by `save`, its arrays memory-mapped read-only (raises OccreidError for
        anything else)."""
        path = Path(path)
        if not path.is_file():
            raise OccreidError(f"index file not found: {path} (create it with `occreid index build`)")
        names = COLUMNS + CROP_COLUMNS + ("crop_start", "crop_features", "jpeg_start", "jpegs")
        try:
            try:
                data: Any = _mapped_npz(path)
            except (ValueError, struct.error):  # not as np.savez writes it: read it the ordinary way
                data = dict(np.load(path, allow_pickle=False))
            header = json.loads(str(np.asarray(data["header"])))
            version = header.get("version")
            if version not in READABLE_VERSIONS or header.get("kind") != "tracks":
                raise OccreidError(f"{path} is not a track index (version {version})")
            if version == 2:  # entries pooled from the crop features, which version 2 always kept
                data["entry_features"] = pool(data["crop_features"], data["crop_start"])
            arrays = {name: data[name] for name in names}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise OccreidError(
                f"{path} is not an occreid track index ({npz_problem(exc)}); rebuild it with "
                "`occreid index build --overwrite`"
            ) from None
        return cls(meta=header.get("meta", {}), cameras=header.get("cameras", {}), **arrays)
