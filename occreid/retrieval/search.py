"""Search a gallery: by a track of the index (cross-camera by default) or by an image, with the same JSON
answer as `occreid search --json`.

    index = load_index("gallery.npz")                      # a TrackIndex (v2) or an image GalleryIndex (v1)
    search_by_track(index, "cam1", 3, topk=10)   # {"query": {"camera": "cam1", "track": 3}, "results": [...]}
    search_by_image(index, Image.open("q.jpg"), extractor, query="q.jpg")

A result is {"camera", "track", "distance", "first_frame", "last_frame", "seconds": [start, end] or None,
"crops"}; on an image index {"path", "distance"}. Distances on a track index are cosine distances (1 - cos):
`rescore="mean"` compares entry features (each the pooled mean of its crops); `rescore="max"` re-ranks the
best `shortlist(topk)` of those by the closest pair of crops (query crops x entry crops).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError, npz_problem
from occreid.evaluation.index import GalleryIndex
from occreid.retrieval.track_index import (
    NO_CROP_FEATURES,
    READABLE_VERSIONS,
    TrackIndex,
    concat_ranges,
    normalise,
)

RESCORE = ("mean", "max")
BACKENDS = ("torch", "faiss", "faiss-hnsw")
HNSW_EF_SEARCH = 256  # faiss-hnsw: recall@10 0.945 at 128, on 100k synthetic tracks (bench_recordings.py)


def load_index(path: str | Path) -> TrackIndex | GalleryIndex:
    """The index at `path`: a TrackIndex (format 3, or 2) or an image GalleryIndex (format 1)."""
    path = Path(path)
    if not path.is_file():
        raise OccreidError(f"index file not found: {path} (create it with `occreid index build`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise OccreidError(
            f"{path} is not an occreid gallery index ({npz_problem(exc)}); rebuild it with "
            "`occreid index build --overwrite`"
        ) from None
    version = header.get("version") if isinstance(header, dict) else None
    if version in READABLE_VERSIONS:
        return TrackIndex.load(path)
    if version in (1, None):  # format 1, or a broken header that GalleryIndex.load explains in one line
        return GalleryIndex.load(path)
    raise OccreidError(f"{path} has index format {version}, which this occreid cannot read; upgrade occreid")


def shortlist(topk: int) -> int:
    """How many entries by mean distance `rescore="max"` re-ranks."""
    return max(100, 10 * topk)


def _check(topk: int, rescore: str) -> None:
    if topk < 1:
        raise OccreidError(f"topk must be >= 1, got {topk}")
    if rescore not in RESCORE:
        raise OccreidError(f"unknown rescore {rescore!r}; use one of {', '.join(RESCORE)}")


def _similarities(
    index: TrackIndex, query: np.ndarray, exclude: np.ndarray | None, backend: str, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosine similarities) of the k most similar entries not excluded, best first."""
    import torch

    allowed = len(index) - (int(exclude.sum()) if exclude is not None else 0)
    k = min(k, allowed)
    if k < 1:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if backend == "torch":
        cached = index.search_cache.get("torch")
        if cached is None:
            cached = index.search_cache["torch"] = torch.from_numpy(index.features)
        sims = cached @ torch.from_numpy(query)
        if exclude is not None:
            sims[torch.from_numpy(exclude)] = -float("inf")
        values, rows = torch.topk(sims, k)
        return rows.numpy(), values.numpy()
    if backend not in BACKENDS:
        raise OccreidError(f"unknown search backend {backend!r}; use one of {', '.join(BACKENDS)}")
    built = index.search_cache.get(backend) or _faiss_index(index, backend)  # says how to install faiss
    import faiss

    params = None
    if exclude is not None:
        bitmap = np.packbits(~exclude, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(index), faiss.swig_ptr(bitmap))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
        if backend == "faiss":
            params = faiss.SearchParameters(sel=selector)
    values, rows = built.search(query[None, :], k, params=params)
    keep = rows[0] >= 0
    return rows[0][keep].astype(np.int64), values[0][keep]


def _faiss_index(index: TrackIndex, backend: str):
    try:
        import faiss
    except ImportError:
        raise OccreidError(
            'the faiss backends need faiss: pip install -e ".[faiss]" in a clone of occreid'
        ) from None
    if backend == "faiss":
        built = faiss.IndexFlatIP(index.dim)
    else:  # approximate: HNSW graph over inner products
        built = faiss.IndexHNSWFlat(index.dim, 32, faiss.METRIC_INNER_PRODUCT)
        built.hnsw.efSearch = HNSW_EF_SEARCH
    built.add(np.ascontiguousarray(index.features))
    index.search_cache[backend] = built
    return built


def max_over_crops(index: TrackIndex, rows: np.ndarray, query_crops: np.ndarray) -> np.ndarray:
    """Per entry of `rows`, the best cosine between a row of `query_crops` (q, D) and one of its crops."""
    if not len(rows):
        return np.zeros(0, np.float32)
    starts, ends = index.crop_start[rows], index.crop_start[rows + 1]
    crops = concat_ranges(starts, ends - starts)
    sims = (query_crops @ normalise(index.crop_features[crops]).T).max(axis=0)
    return np.maximum.reduceat(sims, np.r_[0, np.cumsum(ends - starts)[:-1]])


def nearest(
    index: TrackIndex,
    query: np.ndarray,
    query_crops: np.ndarray | None,
    topk: int,
    exclude: np.ndarray | None = None,
    rescore: str = "mean",
    backend: str = "torch",
) -> list[tuple[int, float]]:
    """(row, distance) of the `topk` nearest entries to the L2-normalised `query` (D,), leaving out the rows
    where `exclude` (N,) is True; with rescore="max" the distance is 1 - the best cosine between a row of
    `query_crops` (q, D) and one of the entry's crops."""
    _check(topk, rescore)
    if rescore == "max" and not index.keeps_crop_features:
        raise OccreidError(NO_CROP_FEATURES)
    if not len(index):
        raise OccreidError("the index is empty; add a recording first (occreid index add)")
    if query.shape[-1] != index.dim:
        raise OccreidError(
            f"query features are {query.shape[-1]}-d but the index holds {index.dim}-d features"
        )
    wanted = shortlist(topk) if rescore == "max" else topk
    rows, sims = _similarities(index, np.ascontiguousarray(query, dtype=np.float32), exclude, backend, wanted)
    if rescore == "max":
        sims = max_over_crops(index, rows, query_crops)
        order = np.argsort(-sims, kind="stable")
        rows, sims = rows[order], sims[order]
    return [(int(r), float(1.0 - s)) for r, s in zip(rows[:topk], sims[:topk])]


def result(index: TrackIndex, row: int, distance: float) -> dict[str, Any]:
    """One result: camera, track, distance, first_frame, last_frame, seconds, crops."""
    entry = index.entry(row)
    return {
        "camera": entry.pop("camera"),
        "track": entry.pop("track"),
        "distance": round(distance, 6),
        **entry,
    }


def search_by_track(
    index: TrackIndex,
    camera: str,
    track: int,
    *,
    topk: int = 10,
    include_same_camera: bool = False,
    rescore: str = "mean",
    backend: str = "torch",
) -> dict[str, Any]:
    """The entries nearest to the track (camera, track), itself left out, and its camera too unless
    `include_same_camera`. Unknown camera or track: occreid.retrieval.UnknownTrackError."""
    if not isinstance(index, TrackIndex):
        raise OccreidError("this index holds images, not tracks; search it with an image (--image)")
    row = index.row(camera, track)
    if include_same_camera:
        exclude = np.zeros(len(index), bool)
    else:
        exclude = index.camera_code == index.camera_code[row]
    exclude[row] = True
    crops = index.crop_rows(row) if rescore == "max" else None
    found = nearest(index, index.features[row], crops, topk, exclude, rescore, backend)
    return {
        "query": {"camera": camera, "track": int(track)},
        "results": [result(index, r, d) for r, d in found],
    }


def search_by_image(
    index: TrackIndex | GalleryIndex,
    image: Any,
    extractor: Any,
    *,
    topk: int = 10,
    rescore: str = "mean",
    backend: str = "torch",
    query: str | None = None,
) -> dict[str, Any]:
    """The entries nearest to `image` (a PIL image or a path) embedded by `extractor`. `query` names it in the
    answer (default: the path, or "image")."""
    if query is None:
        query = str(image) if isinstance(image, (str, Path)) else "image"
    feature = extractor([image]).numpy().astype(np.float32)
    if isinstance(index, GalleryIndex):
        _check(topk, rescore)
        found = index.search_paths(feature, topk=topk, backend="faiss" if backend != "torch" else "torch")[0]
        return {"query": query, "results": [{"path": p, "distance": d} for p, d in found]}
    q = normalise(feature)
    found = nearest(index, q[0], q, topk, None, rescore, backend)
    return {"query": query, "results": [result(index, r, d) for r, d in found]}
