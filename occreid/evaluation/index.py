"""A gallery you can search: (N, D) features, their image paths and the settings that produced them, in one
file.

    index = GalleryIndex(metric="euclidean", meta={"checkpoint": "run/model.pt", "image_size": [384, 128]})
    index.add(features, paths)
    distances, indices = index.search(query_features, topk=10)   # (M, k) each, ascending distance
    index.save("gallery.npz"); index = GalleryIndex.load("gallery.npz")

Exact search is a torch matmul + topk in chunks (any device). `backend="faiss"` uses a flat faiss index
(`pip install -e ".[faiss]"` in a clone), exact as well, faster on large galleries.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError, npz_problem
from occreid.utils.files import atomic_write
from occreid.utils.locks import file_lock, lock_path_for

INDEX_VERSION = 1
INDEX_LOCK_WAIT_S = 120.0  # how long a writer waits for another to finish its read-modify-write


class GalleryIndex:
    """Features (N, D) float32 plus paths (N,) and metadata (model, checkpoint, image size, normalisation).

    metric: "euclidean" (squared Euclidean distance) or "cosine" (1 - cosine similarity). With normalize=True
    features are L2-normalised when added and queries when searched.
    """

    def __init__(
        self, metric: str = "euclidean", normalize: bool = False, meta: dict[str, Any] | None = None
    ):
        if metric not in ("euclidean", "cosine"):
            raise OccreidError(f"unknown index metric {metric!r}; use 'euclidean' or 'cosine'")
        self.metric = metric
        self.normalize = normalize
        self.meta: dict[str, Any] = dict(meta or {})
        self.features = np.zeros((0, 0), dtype=np.float32)
        self.paths: list[str] = []
        self._faiss = None  # cached faiss index, rebuilt after add
        self._torch = None  # cached (device, features (N, D), squared norms (N,)) for the torch backend

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        return self.features.shape[1] if len(self) else 0

    def _prepare(self, features: Any) -> np.ndarray:
        array = np.asarray(
            features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float32
        )
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise OccreidError(f"features must be (N, D), got shape {array.shape}")
        if self.normalize or self.metric == "cosine":
            array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(array, dtype=np.float32)

    def add(self, features: Any, paths: Sequence[str]) -> None:
        """Append features (N, D) with their N image paths."""
        array = self._prepare(features)
        if not np.isfinite(array).all():
            raise OccreidError(
                "the model gave NaN or infinite features; they are never indexed (check the model)"
            )
        if len(array) != len(paths):
            raise OccreidError(f"{len(array)} feature rows but {len(paths)} paths")
        if len(self) and array.shape[1] != self.dim:
            raise OccreidError(f"the index holds {self.dim}-d features; cannot add {array.shape[1]}-d ones")
        self.features = array if not len(self) else np.concatenate([self.features, array])
        self.paths.extend(str(p) for p in paths)
        self._faiss = None
        self._torch = None

    def search(
        self,
        query_features: Any,
        topk: int = 10,
        backend: str = "torch",
        device: str = "cpu",
        chunk_size: int = 1024,
    ):
        """The topk nearest gallery items of each query.

        Args:
            query_features: (M, D) or (D,).
            backend: "torch" (exact: matmul + topk on `device`) or "faiss" (exact flat index, CPU).
            device: where the torch backend searches: "cpu", "cuda", "cuda:1", "auto" (CUDA when available).
                The gallery is copied there once and kept until the next `add`.

        Returns:
            distances (M, k) float32 ascending and indices (M, k) int64 into `self.paths`, k = min(topk, N).
        """
        if not len(self):
            raise OccreidError("the index is empty; add gallery features first (occreid index build)")
        q = self._prepare(query_features)
        if q.shape[1] != self.dim:
            raise OccreidError(f"query features are {q.shape[1]}-d but the index holds {self.dim}-d features")
        k = min(int(topk), len(self))
        if k < 1:
            raise OccreidError(f"topk must be >= 1, got {topk}")
        if backend == "torch":
            return self._search_torch(q, k, device, chunk_size)
        if backend == "faiss":
            return self._search_faiss(q, k)
        raise OccreidError(f"unknown search backend {backend!r}; use 'torch' or 'faiss'")

    def _search_torch(self, q: np.ndarray, k: int, device: str, chunk_size: int):
        import torch

        from occreid.utils.device import resolve_device

        device = resolve_device(device, option="--device")
        if self._torch is None or self._torch[0] != device:
            sq_norms = np.einsum("ij,ij->i", self.features, self.features)
            self._torch = (
                device,
                torch.from_numpy(self.features).to(device),
                torch.from_numpy(sq_norms).to(device),
            )
        _, g, g_sq = self._torch
        dist_out, idx_out = [], []
        qt = torch.from_numpy(q).to(device)
        for s in range(0, len(qt), chunk_size):
            block = qt[s : s + chunk_size]
            if self.metric == "euclidean":
                d = torch.addmm(g_sq.unsqueeze(0), block, g.T, beta=1.0, alpha=-2.0)
                d.add_(block.pow(2).sum(dim=1, keepdim=True)).clamp_(min=0)
            else:
                d = 1.0 - block @ g.T
            values, index = torch.topk(d, k, dim=1, largest=False, sorted=True)
            dist_out.append(values)
            idx_out.append(index)
        return torch.cat(dist_out).cpu().numpy(), torch.cat(idx_out).cpu().numpy().astype(np.int64)

    def _search_faiss(self, q: np.ndarray, k: int):
        try:
            import faiss
        except ImportError:
            raise OccreidError(
                'the faiss backend needs faiss: pip install -e ".[faiss]" in a clone of occreid'
            ) from None
        if self._faiss is None:
            index = faiss.IndexFlatL2(self.dim) if self.metric == "euclidean" else faiss.IndexFlatIP(self.dim)
            index.add(self.features)
            self._faiss = index
        values, index = self._faiss.search(q, k)
        if self.metric == "cosine":
            values = 1.0 - values
        return values.astype(np.float32), index.astype(np.int64)

    def search_paths(
        self, query_features: Any, topk: int = 10, backend: str = "torch", device: str = "cpu"
    ) -> list[list[tuple[str, float]]]:
        """Like `search` (on `device` with the torch backend) but (path, distance) pairs per query."""
        distances, indices = self.search(query_features, topk, backend, device)
        return [
            [(self.paths[i], float(d)) for d, i in zip(drow, irow)] for drow, irow in zip(distances, indices)
        ]

    @property
    def precision(self) -> str:
        """The precision of the model behind the features ("fp32" or "int8"; indexes that do not record it
        hold fp32 features)."""
        return str(self.meta.get("precision", "fp32"))

    def precision_problem(self, precision: str) -> str | None:
        """None when features of a `precision` model match the index's, else what differs (adding them is
        refused; a query gets a warning)."""
        if precision == self.precision:
            return None
        return f"the index holds {self.precision} features but this model gives {precision} features"

    def check_compatible(self, meta: dict[str, Any]) -> None:
        """Raise if `meta` disagrees with the index's own on a key both define
        (checkpoint, image size, ...)."""
        for key, value in meta.items():
            if key in self.meta and _jsonable(self.meta[key]) != _jsonable(value):
                raise OccreidError(
                    f"the index was built with {key}={self.meta[key]!r} but these features use "
                    f"{key}={value!r}; build a new index instead of mixing features from different models or "
                    "settings"
                )

    def save(self, path: str | Path) -> Path:
        """Write the whole index to one .npz file, atomically (occreid.utils.files.atomic_write)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise OccreidError(f"index file {path} must end in .npz")
        header = {
            "version": INDEX_VERSION,
            "metric": self.metric,
            "normalize": self.normalize,
            "meta": self.meta,
        }
        with atomic_write(path) as fh:
            np.savez(
                fh,
                features=self.features,
                paths=np.asarray(self.paths, dtype=str),
                header=np.asarray(json.dumps(header)),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        path = Path(path)
        if not path.is_file():
            raise OccreidError(f"index file not found: {path} (create it with `occreid index build`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                features = data["features"].astype(np.float32)
                paths = [str(p) for p in data["paths"]]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise OccreidError(
                f"{path} is not an occreid gallery index ({npz_problem(exc)}); rebuild it with "
                "`occreid index build --overwrite`"
            ) from None
        problem = _header_problem(header) or _rows_problem(features, paths)
        if problem:
            raise OccreidError(
                f"{path} is not a usable gallery index ({problem}); rebuild it with "
                "`occreid index build --overwrite`"
            )
        index = cls(metric=header["metric"], normalize=header["normalize"], meta=header.get("meta", {}))
        if len(paths):
            index.features = features
            index.paths = paths
        return index

    def merge_into(self, path: str | Path) -> int:
        """Append this index's rows to the index file at `path` as it is now, under its lock (`index_lock`),
        so that two writers at once both land: the file is re-read under the lock, rows whose path it
        already holds are skipped, and the result is saved atomically. Returns how many rows were added."""
        with index_lock(path):
            fresh = GalleryIndex.load(path)
            fresh.check_compatible(self.meta)
            if (self.metric, self.normalize) != (fresh.metric, fresh.normalize):
                raise OccreidError(
                    f"{path} uses metric={fresh.metric}, normalize={fresh.normalize}, these features "
                    f"metric={self.metric}, normalize={self.normalize}; build a new index"
                )
            known = set(fresh.paths)
            keep = [i for i, p in enumerate(self.paths) if p not in known]
            if keep:
                fresh.add(self.features[keep], [self.paths[i] for i in keep])
                fresh.save(path)
            return len(keep)


@contextlib.contextmanager
def index_lock(path: str | Path) -> Iterator[None]:
    """Hold the lock of the index file `path` (`<path>.lock`, occreid.utils.locks) around a read-modify-write;
    every writer of an index takes it, waiting up to INDEX_LOCK_WAIT_S for another writer to finish."""
    with file_lock(lock_path_for(path), what=f"the index {path}", wait_s=INDEX_LOCK_WAIT_S):
        yield


def _header_problem(header: Any) -> str | None:
    if not isinstance(header, dict):
        return f"its header is {type(header).__name__}, not a JSON object"
    missing = [key for key in ("metric", "normalize") if key not in header]
    if missing:
        return f"its header has no {' or '.join(missing)}"
    if header["metric"] not in ("euclidean", "cosine") or not isinstance(header.get("meta", {}), dict):
        return f"its header has metric {header['metric']!r} (euclidean or cosine) or a meta that is no object"
    return None


def _rows_problem(features: np.ndarray, paths: list[str]) -> str | None:
    if features.ndim != 2 and len(paths):
        return f"features of shape {features.shape}, not (N, D)"
    if len(paths) and len(features) != len(paths):
        return f"{len(features)} feature rows but {len(paths)} paths"
    if len(paths) and not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        return f"{bad} of its {len(paths)} feature rows hold NaN or infinite values"
    return None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
