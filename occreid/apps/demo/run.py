"""`occreid demo`: the main job on the built-in data, on a CPU in about ten minutes.

SynthOcc (occluded protocol, ground-truth keypoints) -> train every model of MODELS (Baseline and PGFL-KD on
an ImageNet-pretrained MobileNetV2; the ViT baseline and OGFR on the hybrid ViT with that MobileNetV2 stem)
with the same data, schedule and seed -> evaluate each on occluded queries with its deployed model (images
only: no pose, no holistic teacher) -> one table (Rank-1, mAP, mINP, parameters, FLOPs, ms per query, and
PGFL-KD's pose-at-test features of Table 8), a table by the query's occluder type, `results.json`, and
`report.md` with training curves, ranked lists, the CNNs' response maps, the ViTs' attention maps and the
tokens OGFR's agent erases. A new model is one more DemoModel in its method package's DEMO
(occreid.methods).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.apps.demo.recording import demo_recording_step
from occreid.apps.demo.report import write_report
from occreid.config import Config, load_config
from occreid.engine.trainer import train
from occreid.evaluation.evaluate import EvalOutput, evaluate_features, extract_features
from occreid.inference.models import load_method
from occreid.methods import DemoModel, demo_models

MODELS: list[DemoModel] = demo_models()  # every method package's DEMO, in registry order


def _reusable(root: Path, seed: int) -> bool:
    """Whether `root` holds a complete SynthOcc of this generator version made with the demo's settings (seed,
    default preset, occluded protocol, not an unseen-occluder split)."""
    from occreid.data.synthocc.generate import VERSION

    meta = root / "synthocc.json"
    if not meta.is_file():
        return False
    try:
        settings = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    # train_occluders is absent from datasets written before the unseen-occluder split existed: None as well
    wanted = {
        "seed": seed,
        "protocol": "occluded",
        "preset": "default",
        "version": VERSION,
        "train_occluders": None,
    }
    return isinstance(settings, dict) and all(settings.get(key) == value for key, value in wanted.items())


def _make_data(root: Path, seed: int, overwrite: bool = False) -> None:
    """SynthOcc (default preset, occluded protocol) at `root`, reused when `_reusable`; another one there is
    replaced only with `overwrite`."""
    from occreid.data.synthocc import generate as generate_synthocc

    if _reusable(root, seed):
        print(f"reusing SynthOcc at {root}")
        return
    print(f"generating SynthOcc (occluded protocol, seed {seed}) at {root}")
    generate_synthocc(root, preset="default", seed=seed, protocol="occluded", force=overwrite)


DEMO_OUTPUTS = ("results.json", "report.md", "curves.png")  # and each model's run folder with its report/


def _check_out(out: Path, seed: int, overwrite: bool) -> None:
    """Before any work: an --out holding an earlier demo (runs, report, other SynthOcc data) is refused unless
    `overwrite` (the rule of occreid.engine.rundir)."""
    from occreid.engine.rundir import run_files
    from occreid.errors import OccreidError
    from occreid.utils.files import check_writable_dir

    check_writable_dir(out, "--out")
    if overwrite:
        return
    found = [out / m.key / p.name for m in MODELS for p in run_files(out / m.key)]
    found += [out / name for name in DEMO_OUTPUTS if (out / name).exists()]
    data = out / "synthocc"
    if data.exists() and any(data.iterdir()) and not _reusable(data, seed):
        found.append(data)
    if found:
        raise OccreidError(
            f"--out {out} already holds an earlier demo "
            f"({', '.join(str(p.relative_to(out)) for p in found[:4])}{', ...' if len(found) > 4 else ''}); "
            "pass --overwrite to replace it, or choose another --out"
        )


@torch.inference_mode()
def _ms_per_query(
    model: nn.Module, cfg: Config, query_paths: list[str], gallery_feats: torch.Tensor
) -> float:
    """Wall time of one query end to end: load, preprocess, forward at batch 1 (in the precision the
    evaluation uses, fp32), rank the whole gallery."""
    from PIL import Image

    from occreid.data.transforms import build_transforms

    transform = build_transforms(cfg.data, train=False)
    gallery = nn.functional.normalize(gallery_feats, dim=1)
    times = []
    for path in query_paths[:5] + query_paths[:30]:  # the first 5 calls warm up (allocator, oneDNN kernels)
        start = time.perf_counter()
        image, _ = transform(Image.open(path).convert("RGB"), None)
        feat = nn.functional.normalize(model(image[None]).float(), dim=1)
        torch.argsort(torch.cdist(feat, gallery)[0])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[5:]))


class _PoseFeatures(nn.Module):
    """PGFL-KD's pose-at-test features (Table 8) from one forward pass, concatenated in `features` order."""

    def __init__(self, method: nn.Module, features: tuple[str, ...]) -> None:
        super().__init__()
        self.method, self.features = method, features

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        branches = self.method.branches(images, keypoints)
        return torch.cat([self.method.test_feature(branches, name) for name in self.features], dim=1)


def pose_at_test(checkpoint: Path, dataset, features: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """PGFL-KD's pose-based test features (Table 8) with SynthOcc's ground-truth keypoints: what f_G is
    distilled from, to see how much of it the pose-free model keeps. Features the model's switches do not
    produce (f_P / f_V without pgfl_kd.sab, f_F / f_E without pgfl_kd.feb) are left out."""
    from occreid.config import apply_overrides
    from occreid.data.splits import keypoints_for

    method, cfg = load_method(checkpoint, "cpu")
    branch = {"f_P": "sab", "f_V": "sab", "f_F": "feb", "f_E": "feb"}
    features = tuple(f for f in features if cfg.model.name == "pgfl_kd" and getattr(cfg.pgfl_kd, branch[f]))
    if not features:
        return {}
    model, device = _PoseFeatures(method, features), torch.device("cpu")
    qf = extract_features(
        model, dataset.query, cfg, device, keypoints_for(dataset, dataset.query, None), desc="query"
    )
    gf = extract_features(
        model, dataset.gallery, cfg, device, keypoints_for(dataset, dataset.gallery, None), desc="gallery"
    )
    out = {}
    for feature, q, g in zip(features, qf.chunk(len(features), 1), gf.chunk(len(features), 1)):
        feature_cfg = apply_overrides(cfg, [f"model.test_feature={feature}"])
        r = evaluate_features(q, g, dataset.query, dataset.gallery, feature_cfg).result
        out[feature] = {"rank1": float(r.cmc[0]), "mAP": float(r.mAP), "mINP": float(r.mINP)}
    return out


def run_demo(
    out: Path, seed: int = 0, epochs: int | None = None, overwrite: bool = False
) -> dict[str, dict[str, Any]]:
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, seed, overwrite)
    data_root = out / "synthocc"
    _make_data(data_root, seed, overwrite)

    runs: dict[str, Path] = {}
    cfgs: dict[str, Config] = {}
    seconds: dict[str, float] = {}
    for m in MODELS:
        cfg = demo_config(m, out, seed, epochs)
        print(f"\n=== training {m.title} ===")
        t0 = time.perf_counter()
        train(cfg, overwrite=overwrite)
        seconds[m.key] = time.perf_counter() - t0
        print(f"{m.title} trained in {seconds[m.key]:.0f} s")
        runs[m.key], cfgs[m.key] = out / m.key, cfg
    rows, methods, outputs = evaluate_models(out, seed, runs, seconds)
    write_report(out, seed, rows, runs, cfgs, methods, outputs, seconds)
    browse = demo_recording_step(out, seed, runs)
    print(
        f"\nreport: {out / 'report.md'}; results: {out / 'results.json'}; "
        f"total {time.perf_counter() - started:.0f} s\n{browse}"
    )
    return rows


def demo_config(model: DemoModel, out: Path, seed: int, epochs: int | None = None) -> Config:
    """A demo model's config: its packaged file on the demo's SynthOcc at <out>/synthocc, seed and run
    folder."""
    overrides = [f"data.root={out / 'synthocc'}", f"train.seed={seed}", f"train.output_dir={out / model.key}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    return load_config(model.config, overrides)


def evaluate_models(
    out: Path, seed: int, runs: dict[str, Path], seconds: dict[str, float]
) -> tuple[dict[str, dict[str, Any]], dict[str, nn.Module], dict[str, EvalOutput]]:
    """Evaluate the trained MODELS (`runs`: key -> run folder with best.pt) on <out>/synthocc with their
    deployed models: results.json's rows, the trained methods and their evaluation outputs, by key."""
    from occreid.data.datasets import load_dataset
    from occreid.modeling.checkpoint import load_checkpoint
    from occreid.modeling.complexity import count_flops, count_parameters
    from occreid.utils.provenance import provenance

    dataset = load_dataset("synthocc", out / "synthocc")
    rows: dict[str, dict[str, Any]] = {}
    methods: dict[str, nn.Module] = {}
    outputs: dict[str, EvalOutput] = {}
    for m in MODELS:
        name = m.key
        methods[name], cfg = load_method(runs[name] / "best.pt", "cpu")
        model = methods[name].deploy().eval()
        trained = load_checkpoint(runs[name] / "best.pt")["config"]  # as trained (pretrained as set)
        device = torch.device("cpu")
        qf = extract_features(model, dataset.query, cfg, device, desc="query")
        gf = extract_features(model, dataset.gallery, cfg, device, desc="gallery")
        output = evaluate_features(qf, gf, dataset.query, dataset.gallery, cfg)
        h, w = cfg.data.image_size
        r = output.result
        rows[name] = {
            "title": m.title,
            "config": m.config,
            "train_seconds": round(seconds[name], 1),
            "pretrained": trained["model"]["pretrained"],
            "provenance": provenance(trained),
            "rank1": float(r.cmc[0]),
            "rank5": float(r.cmc[4]),
            "rank10": float(r.cmc[9]),
            "mAP": float(r.mAP),
            "mINP": float(r.mINP),
            "params": count_parameters(model),
            "flops": count_flops(model, (1, 3, h, w)),
            "ms_per_query": _ms_per_query(model, cfg, [q.path for q in dataset.query], gf),
            "settings": output.settings,
            "seed": seed,
            "epochs": cfg.train.epochs,
            "backbone": cfg.model.backbone,
            "per_type": {
                t: {"rank1": float(x.cmc[0]), "mAP": float(x.mAP), "mINP": float(x.mINP)}
                for t, x in output.per_type.items()
            },
            "per_type_queries": {
                t: sum(q.occluder_type == t for q in dataset.query) for t in output.per_type
            },
        }
        if m.pose_features:
            rows[name]["pose_at_test"] = pose_at_test(runs[name] / "best.pt", dataset, m.pose_features)
        outputs[name] = output
    return rows, methods, outputs
