"""`occreid report RUN`: what a training run learnt, in RUN/report/report.md with its pictures beside it.

    write_run_report(Path("runs/mine"))     # -> runs/mine/report/report.md

- the training curves from RUN/metrics.jsonl (loss per logged step; mAP and Rank-1 per evaluation);
- best.pt's deployed model (images only) evaluated on the run's own query and gallery, next to the chance
  level (the same metrics for random rankings, so a small dataset's numbers can be judged);
- ranked lists of its best and worst queries, and where the model looks: the CNNs' feature-response maps or
  the ViTs' class-token attention (and, for a method with an erasing agent, the tokens it erases).

A run without query/gallery (train-only data) gets its curves and maps on training images. The report is
written into a temporary folder and renamed into place, so a failure leaves any earlier report whole; an
existing report is replaced only with `overwrite`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from occreid.config import Config
from occreid.data.records import ImageRecord, ReidDataset
from occreid.data.splits import load_test_split
from occreid.errors import OccreidError
from occreid.evaluation.evaluate import EvalOutput, evaluate_features, extract_features
from occreid.evaluation.rank import evaluate_rank
from occreid.inference.models import load_method
from occreid.modeling.checkpoint import checkpoint_config, load_checkpoint
from occreid.modeling.vit import VIT_ARCHS
from occreid.reports.pictures import read_metrics, response_maps, training_curves

REPORT_DIR = "report"
CHANCE_DRAWS = 10  # random rankings averaged for the chance level (fewer on large galleries)
MAP_IMAGES = 6  # images in the response / attention maps
RANKED_QUERIES = 4  # queries in each of the best and worst ranked lists


@dataclass
class Evaluated:
    """A run's model, evaluated already (the demo has it): the full method, its config and the output."""

    method: nn.Module
    cfg: Config
    output: EvalOutput


def write_run_report(
    run_dir: str | Path, overwrite: bool = False, evaluated: Evaluated | None = None, title: str = ""
) -> Path:
    """Write RUN/report/report.md and its pictures (see the module doc); returns the report's path."""
    run_dir = Path(run_dir)
    metrics, checkpoint = _check_run(run_dir)
    out = run_dir / REPORT_DIR
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OccreidError(f"{out} already holds a report; pass --overwrite to replace it")
    tmp = run_dir / f".{REPORT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        lines = _write_contents(run_dir, metrics, checkpoint, tmp, evaluated, title or run_dir.name)
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out / "report.md"


def _check_run(run_dir: Path) -> tuple[Path, Path]:
    """RUN's metrics.jsonl and best.pt (last.pt of a run that has no best.pt yet); an OccreidError naming
    what is missing otherwise."""
    if not run_dir.is_dir():
        raise OccreidError(f"report: {run_dir} is not a folder; give a run folder written by occreid train")
    metrics = run_dir / "metrics.jsonl"
    checkpoint = next((run_dir / n for n in ("best.pt", "last.pt") if (run_dir / n).is_file()), None)
    if not metrics.is_file() or checkpoint is None:
        missing = [n for n, ok in (("metrics.jsonl", metrics.is_file()), ("best.pt", checkpoint)) if not ok]
        raise OccreidError(
            f"report: {run_dir} has no {' or '.join(missing)}; give a run folder written by occreid train "
            "(it writes both)"
        )
    return metrics, checkpoint


def _write_contents(
    run_dir: Path, metrics: Path, checkpoint: Path, out: Path, evaluated: Evaluated | None, title: str
) -> list[str]:
    records = read_metrics(metrics)
    training_curves(records, out / "curves.png", title)
    if evaluated is None:
        method, cfg = load_method(checkpoint, "cpu")
    else:
        method, cfg = evaluated.method, evaluated.cfg
    test = load_test_split(cfg)
    has_test = bool(test.query and test.gallery)
    output = evaluated.output if evaluated else (_evaluate(method, cfg, test) if has_test else None)
    lines = _header(run_dir, checkpoint, cfg, test, title) + _curve_lines(records)
    if output is not None:
        lines += _evaluation_lines(output, test)
        lines += _ranked_lines(output, test, out)
    else:
        lines += ["## Evaluation", "", "Not evaluated: the run's data has no query and gallery images.", ""]
    images = _map_images(test)
    lines += _map_lines(method, cfg, images, out, title, "queries" if has_test else "training images")
    gallery = [r.path for r in test.gallery][:: max(1, len(test.gallery) // MAP_IMAGES)][:MAP_IMAGES]
    return lines + _erased_token_lines(method, gallery, out)


def _evaluate(method: nn.Module, cfg: Config, test: ReidDataset) -> EvalOutput:
    """The deployed model (images only) on the test split, on the CPU."""
    model, device = method.deploy().eval(), torch.device("cpu")
    qf = extract_features(model, test.query, cfg, device, desc="query")
    gf = extract_features(model, test.gallery, cfg, device, desc="gallery")
    return evaluate_features(qf, gf, test.query, test.gallery, cfg)


def chance_level(
    query: list[ImageRecord], gallery: list[ImageRecord], max_rank: int = 50
) -> dict[str, float]:
    """Rank-1/5/10, mAP and mINP of random rankings under the same protocol (same pids, same-camera filter),
    averaged over CHANCE_DRAWS draws (seed 0; one draw where query x gallery exceeds 5e7)."""
    draws = CHANCE_DRAWS if len(query) * len(gallery) <= 5e7 else 1
    rng = np.random.default_rng(0)
    ids = [np.array([getattr(r, k) for r in recs]) for k in ("pid", "camid") for recs in (query, gallery)]
    results = [
        evaluate_rank(rng.random((len(query), len(gallery)), dtype=np.float32), *ids, max_rank=max_rank)
        for _ in range(draws)
    ]
    scores = {f"rank{k}": float(np.mean([r.cmc[k - 1] for r in results])) for k in (1, 5, 10)}
    return {**scores, **{k: float(np.mean([getattr(r, k) for r in results])) for k in ("mAP", "mINP")}}


def _header(run_dir: Path, checkpoint: Path, cfg: Config, test: ReidDataset, title: str) -> list[str]:
    state = load_checkpoint(checkpoint)
    pretrained = checkpoint_config(state, checkpoint).model.pretrained  # load_method sets it to False
    h, w = cfg.data.image_size
    start = "ImageNet" if pretrained is True else f"`{pretrained}`" if pretrained else "random"
    stats = test.split_stats()
    counts = ", ".join(f"{split} {ids} ids / {n} images" for split, (ids, n, _) in stats.items())
    return [
        f"# {title}: {cfg.model.name} report",
        "",
        f"Run folder `{run_dir}`; {checkpoint.name} after epoch {state.get('epoch')} of {cfg.train.epochs} "
        f"({state.get('step')} steps). Model {cfg.model.name} on {cfg.model.backbone} (start: {start} "
        f"weights) at {h} x {w}. Data: {cfg.data.dataset} at `{cfg.data.root}` ({counts}).",
        "",
    ]


def _curve_lines(records: list[dict]) -> list[str]:
    train = [r for r in records if r.get("kind") == "train"]
    lines = ["## Training curves", "", "![curves](curves.png)", ""]
    if train:
        first, last = train[0], train[-1]
        lines += [
            f"Total loss {first['loss']:.3f} at step {first['step']} -> {last['loss']:.3f} at step "
            f"{last['step']} (epoch {last['epoch']}).",
            "",
        ]
    return lines


def _evaluation_lines(output: EvalOutput, test: ReidDataset) -> list[str]:
    r = output.result
    chance = chance_level(test.query, test.gallery, r.max_rank)
    model = {f"rank{k}": float(r.cmc[k - 1]) for k in (1, 5, 10)} | {"mAP": r.mAP, "mINP": r.mINP}
    keys = ("rank1", "rank5", "rank10", "mAP", "mINP")
    rows = [("this model (best.pt, images only)", model), ("chance (random rankings)", chance)]
    table = ["| | Rank-1 | Rank-5 | Rank-10 | mAP | mINP |", "|---|---:|---:|---:|---:|---:|"]
    table += [f"| {name} | " + " | ".join(f"{100 * v[k]:.1f}" for k in keys) + " |" for name, v in rows]
    return [
        "## Evaluation on the run's own query and gallery (%)",
        "",
        *table,
        "",
        f"{len(test.query)} queries ({r.num_valid_queries} with a match in the gallery from another "
        f"camera), {len(test.gallery)} gallery images; same person and camera removed from each query's "
        "gallery. Chance: the same metrics for random rankings.",
        "",
    ]


def _ranked_lines(output: EvalOutput, test: ReidDataset, out: Path) -> list[str]:
    from occreid.evaluation.visualize import ranked_results_grid

    ids = [
        np.array([getattr(r, k) for r in recs])
        for k in ("pid", "camid")
        for recs in (test.query, test.gallery)
    ]
    q_pids, g_pids, q_camids, g_camids = ids
    lines = ["## Ranked lists (green: same person, red: another)", ""]
    for select in ("best", "worst"):
        ranked_results_grid(
            output.distmat,
            output.query_paths,
            output.gallery_paths,
            q_pids,
            g_pids,
            q_camids,
            g_camids,
            out / f"ranked_{select}.png",
            topk=8,
            select=select,
            num_queries=RANKED_QUERIES,
        )
        lines += [
            f"Up to {RANKED_QUERIES} {select} queries by AP:",
            "",
            f"![{select}](ranked_{select}.png)",
            "",
        ]
    return lines


def _map_images(test: ReidDataset) -> list[str]:
    """Up to MAP_IMAGES queries spread over the query list (training images where there is no query)."""
    records = test.query if test.query and test.gallery else test.train
    return [r.path for r in records][:: max(1, len(records) // MAP_IMAGES)][:MAP_IMAGES]


def _map_lines(
    method: nn.Module, cfg: Config, images: list[str], out: Path, title: str, which: str
) -> list[str]:
    if not images:
        return []
    model = method.deploy().eval()
    if cfg.model.backbone in VIT_ARCHS:
        from occreid.evaluation.token_maps import attention_maps

        attention_maps({title: model}, images, out / "attention_maps.png", cfg)
        heading, picture = "ViT attention (last block, class token over the patches)", "attention_maps.png"
    else:
        response_maps({title: model}, cfg, images, out / "response_maps.png")
        heading, picture = "Feature-response maps (channel mean of F)", "response_maps.png"
    return [f"## {heading} on {which}", "", f"![maps]({picture})", ""]


def _erased_token_lines(method: nn.Module, images: list[str], out: Path) -> list[str]:
    """The tokens a method's erasing agent (OGFR's) removes in its holistic teacher, on gallery images."""
    if getattr(method, "agent", None) is None or not images:
        return []
    from occreid.evaluation.token_maps import draw_erased_tokens

    draw_erased_tokens(method, images, out / "erased_tokens.png")
    return [
        "## Tokens the agent erases in the holistic teacher (gallery images)",
        "",
        "![erased](erased_tokens.png)",
        "",
    ]
