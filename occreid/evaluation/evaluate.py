"""Evaluate a model on a query/gallery split: extract features (optionally flip-averaged, across ranks), build
the distance matrix, optionally re-rank, and compute CMC/mAP/mINP with every setting recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from occreid.config import Config
from occreid.data.records import ImageRecord
from occreid.utils.device import ieee_fp32
from occreid.utils.distributed import DistInfo, all_gather_objects
from occreid.utils.progress import progress


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    records: Sequence[ImageRecord],
    cfg: Config,
    device: torch.device,
    keypoints: Sequence[np.ndarray] | None = None,
    info: DistInfo | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """(N, D) float32 CPU features of `records`, in order. With several ranks each extracts a share and the
    shares are gathered on every rank. `keypoints` are passed to the model only when given. Always in IEEE
    fp32, whatever train.amp and train.tf32 (`evaluate_model`): bf16 would round the pooled features."""
    from occreid.data.loaders import build_test_loader
    from occreid.data.transforms import flip_keypoints

    info = info or DistInfo(device=device)
    share = list(range(info.rank, len(records), info.world_size))
    loader = build_test_loader(
        cfg, [records[i] for i in share], [keypoints[i] for i in share] if keypoints is not None else None
    )
    feats = []
    model.eval()
    for batch in progress(loader, desc=desc, unit="batches", enabled=info.is_main):
        images = batch["images"].to(device, non_blocking=True)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        kpts = batch["keypoints"].to(device) if keypoints is not None else None
        f = model(images, kpts) if kpts is not None else model(images)
        if cfg.eval.flip:
            flipped = images.flip(3)
            if kpts is not None:
                f = f + model(flipped, flip_keypoints(kpts, images.shape[-1]))
            else:
                f = f + model(flipped)
            f = f / 2
        feats.append(f.float().cpu())
    local = torch.cat(feats) if feats else torch.zeros(0)
    if not info.enabled:
        return local
    parts = all_gather_objects(local, info)
    out = torch.zeros(len(records), parts[0].shape[1] if parts[0].numel() else 0)
    for rank, part in enumerate(parts):
        if part.numel():
            out[rank :: info.world_size] = part
    return out


@dataclass
class EvalOutput:
    result: object  # occreid.evaluation.EvalResult
    settings: dict
    distmat: np.ndarray = field(repr=False)
    query_paths: list[str] = field(repr=False)
    gallery_paths: list[str] = field(repr=False)
    # occluder type -> that type's queries against the whole gallery; empty where the queries have no types.
    per_type: dict = field(default_factory=dict)  # str -> occreid.evaluation.EvalResult

    def table_rows(self, name: str) -> dict:
        """{name: overall, "name [type]": per type, ...} for `format_results_table`."""
        return {name: self.result, **{f"{name} [{t}]": r for t, r in self.per_type.items()}}


def eval_settings(cfg: Config, num_query: int, num_gallery: int) -> dict:
    """Every setting behind the numbers, in the schema of `occreid.evaluation.report.SETTING_KEYS` (feature,
    normalize, metric, flip, rerank {enabled, k1, k2, lambda_value}, max_rank) plus context."""
    e = cfg.eval
    return {
        "feature": cfg.model.test_feature,
        "neck_feat": cfg.model.neck_feat,
        "normalize": e.normalize,
        "metric": e.metric,
        "flip": e.flip,
        "rerank": {"enabled": e.rerank, "k1": e.k1, "k2": e.k2, "lambda_value": e.lambda_value},
        "max_rank": e.max_rank,
        "image_size": list(cfg.data.image_size),
        "num_query": num_query,
        "num_gallery": num_gallery,
        "protocol": (
            "same pid and same camera removed from each query's gallery; ties ranked by gallery index"
        ),
    }


def evaluate_features(
    qf: torch.Tensor,
    gf: torch.Tensor,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    cfg: Config,
    device: torch.device | None = None,
) -> EvalOutput:
    """Metrics of query features qf (Q, D) against gallery features gf (G, D) with the settings of `cfg.eval`.

    On a CUDA `device` the distance matrix and the ranking stay on the GPU (the torch path of evaluate_rank);
    otherwise they run on the CPU. Re-ranking works from the features (`re_ranking_features`), so its memory
    grows with (Q + G) x k1, never with (Q + G)^2. `EvalOutput.distmat` is always a CPU numpy array. Where the
    queries know their occluder type (`ImageRecord.occluder_type`), `EvalOutput.per_type` holds each type's
    metrics (occreid.evaluation.by_type) and the settings say so.
    """
    from occreid.evaluation import compute_distance, evaluate_rank, re_ranking_features
    from occreid.evaluation.by_type import PROTOCOL as BY_TYPE_PROTOCOL
    from occreid.evaluation.by_type import evaluate_by_type

    e = cfg.eval
    target = device if device is not None and device.type == "cuda" else torch.device("cpu")
    qf, gf = qf.to(target), gf.to(target)
    if e.normalize:
        qf, gf = nn.functional.normalize(qf, dim=1), nn.functional.normalize(gf, dim=1)
    if e.rerank:
        distmat = re_ranking_features(qf, gf, k1=e.k1, k2=e.k2, lambda_value=e.lambda_value, metric=e.metric)
        if target.type == "cuda":
            distmat = torch.from_numpy(distmat).to(target)
    else:
        distmat = compute_distance(qf, gf, metric=e.metric)
    if target.type == "cpu":
        distmat = np.asarray(distmat, dtype=np.float32)
    result = evaluate_rank(
        distmat,
        np.array([r.pid for r in query]),
        np.array([r.pid for r in gallery]),
        np.array([r.camid for r in query]),
        np.array([r.camid for r in gallery]),
        max_rank=e.max_rank,
    )
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.float().cpu().numpy()
    settings = eval_settings(cfg, len(query), len(gallery))
    per_type = {}
    if any(r.occluder_type is not None for r in query):
        per_type = evaluate_by_type(
            distmat,
            [r.pid for r in query],
            [r.pid for r in gallery],
            [r.camid for r in query],
            [r.camid for r in gallery],
            [r.occluder_type for r in query],
            max_rank=e.max_rank,
        )
        settings["per_occluder_type"] = BY_TYPE_PROTOCOL
    return EvalOutput(result, settings, distmat, [r.path for r in query], [r.path for r in gallery], per_type)


def evaluate_model(
    model: nn.Module,
    cfg: Config,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    device: torch.device,
    query_keypoints: Sequence[np.ndarray] | None = None,
    gallery_keypoints: Sequence[np.ndarray] | None = None,
    info: DistInfo | None = None,
) -> EvalOutput | None:
    """Features on all ranks, metrics on the main rank (other ranks get None); on a CUDA `device` the
    distances and the ranking run on the GPU."""
    info = info or DistInfo(device=device)
    with ieee_fp32():  # no TF32 rounding of features and distances, also when training uses it
        qf = extract_features(model, query, cfg, device, query_keypoints, info, desc="query")
        gf = extract_features(model, gallery, cfg, device, gallery_keypoints, info, desc="gallery")
        if not info.is_main:
            return None
        return evaluate_features(qf, gf, query, gallery, cfg, device)
