"""`occreid export`: a trained checkpoint's deployed f_G model to ONNX (fp32, or int8 with --int8: static or
dynamic quantisation), checked against PyTorch, with its preprocessing and provenance in the file's
metadata."""

from __future__ import annotations

from pathlib import Path

import typer

from occreid.errors import OccreidError


def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Training checkpoint (.pt) to export."),
    out: Path = typer.Option(..., "--out", help="ONNX file to write, e.g. model.onnx."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    static_batch: bool = typer.Option(
        False, "--static-batch", help="Fix the batch size to 1 instead of dynamic."
    ),
    atol: float = typer.Option(
        1e-3, "--atol", help="Fail if ONNX and PyTorch outputs differ by more than this."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    int8: bool = typer.Option(
        False, "--int8", help="Write the int8 model (per-channel int8 weights); see --quantization."
    ),
    quantization: str = typer.Option(
        "static",
        "--quantization",
        help="With --int8: static (activation ranges calibrated on --calibration; for CNNs) or dynamic "
        "(activations quantised at run time, no calibration; faster and closer to fp32 for ViTs).",
    ),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Folder of images like those the model will embed (for --int8; with dynamic, only to time it).",
    ),
    calibration_images: int = typer.Option(
        256, "--calibration-images", help="How many images of --calibration to calibrate on (sampled)."
    ),
    check_dataset: str | None = typer.Option(
        None, "--check-dataset", help="With --int8: compare fp32 and int8 mAP on this dataset's test split."
    ),
    check_root: Path | None = typer.Option(None, "--check-root", help="The --check-dataset folder."),
) -> None:
    """Export the deployed model (backbone + GAP + BNNeck, images -> features) to ONNX and verify it with
    onnxruntime, printing the max abs difference to PyTorch. The file carries its preprocessing, feature
    dimension and source checkpoint hash, so `eval`, `index`, `search` and `FeatureExtractor` take it as a
    model. The file appears at --out only once it passed the check; a file that fails it is deleted."""
    import os

    from occreid.inference.models import load_deployed_model
    from occreid.modeling.complexity import count_parameters
    from occreid.utils.files import check_output_file

    if checkpoint.is_dir():
        from occreid.modeling.checkpoint import load_checkpoint

        load_checkpoint(checkpoint)  # its message for a folder names the checkpoints inside it
    if not checkpoint.is_file():
        raise OccreidError(f"--checkpoint {checkpoint} does not exist")
    check_output_file(out, "--out", overwrite)
    calibration_set = _calibration_set(
        int8, quantization, calibration, calibration_images, check_dataset, check_root
    )
    deployed, cfg = load_deployed_model(str(checkpoint), device="cpu")
    image_size = tuple(cfg.data.image_size)
    partial = out.with_name(f".{out.name}.partial.onnx")
    partial_int8 = out.with_name(f".{out.name}.int8.partial.onnx")
    try:
        _export_fp32(deployed, checkpoint, partial, image_size, opset, static_batch, atol, out)
        if int8:
            _export_int8(checkpoint, partial, partial_int8, quantization, calibration_set, image_size, cfg)
            if check_root is not None:
                _check_map(partial, partial_int8, check_dataset, check_root)
            os.replace(partial_int8, out)
        else:
            os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
        partial_int8.unlink(missing_ok=True)
    precision = f"int8 ({quantization})" if int8 else "fp32"
    typer.echo(
        f"wrote {out}: {precision}, input images (B, 3, {image_size[0]}, {image_size[1]}), "
        f"{count_parameters(deployed) / 1e6:.2f}M parameters, opset {opset}"
    )


def _calibration_set(
    int8: bool,
    quantization: str,
    folder: Path | None,
    count: int,
    check_dataset: str | None,
    check_root: Path | None,
) -> list[Path]:
    """The sampled calibration images for --int8 (checked before any export work), or [] without any."""
    from occreid.cli.evaluation import list_images
    from occreid.inference.quantize import QUANTIZATIONS, sample_calibration_images

    if quantization not in QUANTIZATIONS:
        raise OccreidError(f"--quantization {quantization}: unknown; use {' or '.join(QUANTIZATIONS)}")
    if not int8:
        if folder is not None or check_root is not None or quantization != "static":
            raise OccreidError(
                "--calibration, --quantization and --check-root are for --int8; add --int8 or leave them out"
            )
        return []
    if folder is None and quantization == "static":
        raise OccreidError(
            "--int8 needs --calibration DIR, a folder of a few hundred images like those it will embed "
            "(or --quantization dynamic, which needs none)"
        )
    if (check_dataset is None) != (check_root is None):
        raise OccreidError("the fp32/int8 mAP check needs both --check-dataset NAME and --check-root DIR")
    if folder is None:
        return []
    try:
        images = list_images(folder)
    except OccreidError as exc:
        raise OccreidError(
            f"--calibration {folder}: {exc}; give a folder of person crops to calibrate on"
        ) from None
    return sample_calibration_images(images, count)


def _export_fp32(deployed, checkpoint: Path, path: Path, image_size, opset, static_batch, atol, out) -> None:
    from occreid.inference.models import export_metadata
    from occreid.inference.onnx_model import write_metadata
    from occreid.modeling.export import export_onnx

    max_diff = export_onnx(deployed, path, image_size, opset=opset, dynamic_batch=not static_batch)
    typer.echo(f"onnxruntime vs PyTorch max abs difference: {max_diff:.3g}")
    if max_diff > atol:
        raise OccreidError(
            f"{out}: ONNX output differs from PyTorch by {max_diff:.3g} > --atol {atol}; the "
            "exported file failed this check and was deleted (nothing written to --out)"
        )
    write_metadata(path, export_metadata(checkpoint, _feature_dim(path), "fp32"))


def _feature_dim(path: Path) -> int:
    import onnx

    dims = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value)


def _export_int8(
    checkpoint: Path, fp32: Path, path: Path, quantization: str, images: list[Path], image_size, cfg
) -> None:
    """Quantise `fp32` to `path` (static: calibrated on `images`), write its metadata, and say how its
    speed compares on `images` (random pixels when there are none)."""
    import torch

    from occreid.inference.models import export_metadata
    from occreid.inference.onnx_model import OnnxModel, write_metadata
    from occreid.inference.quantize import (
        calibration_batch,
        images_per_second,
        quantize_int8,
        quantize_int8_dynamic,
    )

    if quantization == "static":
        typer.echo(f"calibrating int8 on {len(images)} images")
        quantize_int8(fp32, path, images, image_size, cfg.data.mean, cfg.data.std)
    else:
        quantize_int8_dynamic(fp32, path)
    write_metadata(path, export_metadata(checkpoint, _feature_dim(fp32), "int8"))
    if images:
        batch = calibration_batch(images, image_size, cfg.data.mean, cfg.data.std)
    else:
        batch = torch.randn(32, 3, *image_size, generator=torch.Generator().manual_seed(0))
    fast32, fast8 = images_per_second([OnnxModel(fp32, device="cpu"), OnnxModel(path, device="cpu")], batch)
    typer.echo(f"speed on this machine (batch {len(batch)}): fp32 {fast32:.0f} img/s, int8 {fast8:.0f} img/s")
    if fast8 <= fast32 * INT8_FASTER_BY:
        typer.echo(
            f"note: int8 is not faster than fp32 for this model on this CPU ({fast8 / fast32:.2f}x); the "
            "fp32 export (`occreid export` without --int8) is as fast and exact"
        )


INT8_FASTER_BY = 1.05  # int8 must beat fp32 by more than this ratio to count as faster


def _check_map(fp32: Path, int8: Path, dataset: str, root: Path) -> None:
    """Print fp32 and int8 mAP on `dataset`'s test split, and the drop."""
    from occreid.inference.evaluate import deployed_config, evaluate_deployed
    from occreid.inference.models import load_inference_model

    maps = []
    for path in (fp32, int8):
        loaded = load_inference_model(path, device="cpu")
        output, test_set = evaluate_deployed(loaded, deployed_config(loaded, dataset, root))
        maps.append(output.result.mAP)
    drop = (maps[1] - maps[0]) * 100
    typer.echo(f"{test_set.name} mAP: fp32 {maps[0]:.2%}, int8 {maps[1]:.2%} ({drop:+.2f} points)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
