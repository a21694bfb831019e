"""`occreid export`: a trained checkpoint's deployed f_G model to ONNX, checked against PyTorch."""

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
) -> None:
    """Export the deployed model (backbone + GAP + BNNeck, images -> features) to ONNX and verify it with
    onnxruntime, printing the max abs difference to PyTorch. The file appears at --out only once it passed the
    check; a file that fails it is deleted."""
    import os

    from occreid.inference.models import load_deployed_model
    from occreid.modeling.complexity import count_parameters
    from occreid.modeling.export import export_onnx
    from occreid.utils.files import check_output_file

    if checkpoint.is_dir():
        from occreid.modeling.checkpoint import load_checkpoint

        load_checkpoint(checkpoint)  # its message for a folder names the checkpoints inside it
    if not checkpoint.is_file():
        raise OccreidError(f"--checkpoint {checkpoint} does not exist")
    check_output_file(out, "--out", overwrite)
    deployed, cfg = load_deployed_model(str(checkpoint), device="cpu")
    image_size = tuple(cfg.data.image_size)
    partial = out.with_name(f".{out.name}.partial")
    try:
        max_diff = export_onnx(
            deployed,
            partial,
            image_size,
            opset=opset,
            dynamic_batch=not static_batch,
            metadata=_provenance(checkpoint),
        )
        typer.echo(f"onnxruntime vs PyTorch max abs difference: {max_diff:.3g}")
        if max_diff > atol:
            raise OccreidError(
                f"{out}: ONNX output differs from PyTorch by {max_diff:.3g} > --atol {atol}; the "
                "exported file failed this check and was deleted (nothing written to --out)"
            )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(
        f"wrote {out}: input images (B, 3, {image_size[0]}, {image_size[1]}), "
        f"{count_parameters(deployed) / 1e6:.2f}M parameters, opset {opset}"
    )


def _provenance(checkpoint: Path) -> dict:
    """The provenance keys of the checkpoint's training config (occreid.utils.provenance)."""
    from occreid.modeling.checkpoint import load_checkpoint
    from occreid.utils.provenance import provenance

    return provenance(load_checkpoint(checkpoint)["config"])


def register(app: typer.Typer) -> None:
    app.command("export")(export)
