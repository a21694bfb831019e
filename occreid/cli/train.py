"""`occreid train`, `occreid eval` and `occreid demo`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/)")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a field, e.g. --set train.lr=3e-4 (repeatable)"),
]

PARTIAL_SETS = ("partial_reid", "partial_ilids")


def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: Annotated[
        str | None, typer.Option(help="checkpoint to continue from, or 'auto' for <output_dir>/last.pt")
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="run directory (train.output_dir)")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace the run already in the run directory (else refused)")
    ] = False,
) -> None:
    """Train a model. Multi-GPU: torchrun --nproc_per_node N -m occreid train -c CONFIG.

    A run directory that holds a run is never overwritten silently: continue it with --resume auto, or replace
    it with --overwrite."""
    from occreid.config import load_config
    from occreid.engine.trainer import train as run_train

    overrides = list(set_ or [])
    if output_dir is not None:
        overrides.append(f"train.output_dir={output_dir}")
    cfg = load_config(config, overrides)
    result = run_train(cfg, resume=resume, overwrite=overwrite)
    scored = f"best mAP {result.best_map:.1%}" if result.best_map >= 0 else "not evaluated"
    typer.echo(f"done: {result.steps} steps, {scored}, run dir {result.run_dir}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from occreid.utils.distributed import exit_after_distributed_run

        exit_after_distributed_run()


def evaluate(
    checkpoint: Annotated[Path, typer.Option(help="checkpoint written by occreid train (last.pt / best.pt)")],
    dataset: Annotated[
        str | None, typer.Option(help="test on this dataset instead of the training one")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="its root folder")] = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="results JSON (default: next to the checkpoint)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing results JSON")] = False,
    runtime: Annotated[
        str,
        typer.Option(
            help="auto (follows the file), onnx (a .pt exported in memory: f_G) or torch (.pt only)"
        ),
    ] = "auto",
) -> None:
    """Evaluate a checkpoint on a query/gallery split: Rank-k, mAP, mINP, with every setting recorded.

    --root alone evaluates the checkpoint's own dataset at another folder; --dataset NAME --root DIR another
    dataset. An exported .onnx file (or --runtime onnx) evaluates the deployed feature f_G on ONNX Runtime; an
    .onnx file holds no dataset, so it needs --dataset and --root."""
    from occreid.data.splits import check_split_images, check_test_split, load_test_split, test_keypoints
    from occreid.errors import OccreidError
    from occreid.evaluation import format_results_table, results_to_json
    from occreid.evaluation.evaluate import evaluate_model
    from occreid.inference.models import load_method
    from occreid.modeling.checkpoint import checkpoint_config, load_checkpoint
    from occreid.utils.device import resolve_device
    from occreid.utils.files import atomic_write_text, check_output_file

    overrides = list(set_ or [])
    if dataset is not None and root is None:
        raise OccreidError(f"--dataset {dataset} needs --root, the folder that holds it")
    if runtime not in ("auto", "torch", "onnx"):
        raise OccreidError(f"--runtime {runtime}: unknown; use auto, torch or onnx")
    if checkpoint.suffix == ".onnx" and (dataset is None or root is None):
        raise OccreidError(
            f"{checkpoint} holds a model, not its dataset: evaluate it with --dataset NAME --root DIR"
        )
    if root is not None:
        if dataset is None:  # the checkpoint's own (test) dataset, found at --root
            stored = checkpoint_config(load_checkpoint(checkpoint), checkpoint)
            dataset = stored.data.test_dataset or stored.data.dataset
            typer.echo(f"evaluating {dataset} (the checkpoint's dataset) at --root {root}")
        overrides += [f"data.test_dataset={dataset}", f"data.test_root={root}"]
    if checkpoint.suffix == ".onnx" or runtime == "onnx":
        _evaluate_deployed(checkpoint, runtime, overrides, out, overwrite)
        return
    method, cfg = load_method(checkpoint, "cpu", overrides)
    device = resolve_device(cfg.train.device)
    method.to(device)
    test_set = load_test_split(cfg)
    check_test_split(test_set, "occreid eval")
    out = out or Path(checkpoint).with_name(f"eval_{test_set.name}_{cfg.model.test_feature}.json")
    check_output_file(out, "--out", overwrite)
    q_kpts, g_kpts = test_keypoints(cfg, test_set, method.batch_needs().test_keypoints)
    check_split_images(test_set, splits=("query", "gallery"))
    output = evaluate_model(method, cfg, test_set.query, test_set.gallery, device, q_kpts, g_kpts)
    ranks = (1, 3) if test_set.name in PARTIAL_SETS else (1, 5, 10)
    typer.echo(f"{test_set.name}: {len(test_set.query)} queries, {len(test_set.gallery)} gallery images")
    name = f"{cfg.model.name}/{cfg.model.test_feature}"
    typer.echo(format_results_table(output.table_rows(name), ranks=ranks))  # overall, then per occluder type
    payload = results_to_json(output.result, output.settings, output.per_type)
    payload.update({"checkpoint": str(checkpoint), "dataset": test_set.name, "root": str(test_set.root)})
    atomic_write_text(out, json.dumps(payload, indent=2))  # all or nothing: a full disk leaves no 0-byte file
    typer.echo(f"results written to {out}")


def _evaluate_deployed(
    path: Path, runtime: str, overrides: list[str], out: Path | None, overwrite: bool
) -> None:
    """`occreid eval` of the deployed model f_G of a checkpoint or .onnx file (occreid.inference.evaluate)."""
    from occreid.evaluation import format_results_table, results_to_json
    from occreid.inference.evaluate import deployed_config, evaluate_deployed
    from occreid.inference.models import load_inference_model
    from occreid.utils.files import check_output_file

    loaded = load_inference_model(path, runtime=runtime, device="cpu")
    cfg = deployed_config(loaded, None, None, overrides)
    dataset = cfg.data.test_dataset or cfg.data.dataset
    out = out or path.with_name(f"eval_{dataset}_f_G_{loaded.runtime}_{loaded.precision}.json")
    check_output_file(out, "--out", overwrite)
    output, test_set = evaluate_deployed(loaded, cfg, cfg.train.device)
    ranks = (1, 3) if test_set.name in PARTIAL_SETS else (1, 5, 10)
    typer.echo(f"{test_set.name}: {len(test_set.query)} queries, {len(test_set.gallery)} gallery images")
    name = f"{path.name} f_G ({loaded.runtime} {loaded.precision})"
    typer.echo(format_results_table(output.table_rows(name), ranks=ranks))
    payload = results_to_json(output.result, output.settings, output.per_type)
    payload.update({"checkpoint": str(path), "dataset": test_set.name, "root": str(test_set.root)})
    payload["model"] = {"source_sha256": loaded.source_sha256, **loaded.provenance}
    out.write_text(json.dumps(payload, indent=2))
    typer.echo(f"results written to {out}")


def demo(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="seed for the data and every training")] = 0,
    epochs: Annotated[
        int | None, typer.Option(help="training epochs per model (default: the demo preset)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace the demo's earlier runs, data and report in --out")
    ] = False,
) -> None:
    """SynthOcc (occluded) -> train four models (Baseline, ViT baseline, PGFL-KD, OGFR) on the CPU (about 9
    minutes on 2 cores) -> compare their deployed models (f_G, images only) in one table and a report.

    An --out that holds an earlier demo is refused unless --overwrite is given."""
    from occreid.apps.demo.run import run_demo
    from occreid.errors import OccreidError

    if epochs is not None and epochs < 1:  # before SynthOcc is rendered
        raise OccreidError(f"--epochs must be at least 1, got {epochs}")
    run_demo(out, seed=seed, epochs=epochs, overwrite=overwrite)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(evaluate)
    app.command("demo")(demo)
