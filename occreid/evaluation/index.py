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

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError, npz_problem
from occreid.utils.files import atomic_write

INDEX_VERSION = 1


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
        index = cls(metric=header["metric"], normalize=header["normalize"], meta=header.get("meta", {}))
        if len(paths):
            index.features = features
            index.paths = paths
        return index


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
