"""ONNX export of a deployed model (`method.deploy()`, images -> (B, D)) and its check with onnxruntime.

    deployed = build_model(cfg, n).deploy()
    max_diff = export_onnx(deployed, "model.onnx", image_size=(384, 128))

onnx and onnxruntime are optional dependencies (`pip install occreid[onnx]`), imported here only when called.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from occreid.errors import OccreidError

INPUT_NAME, OUTPUT_NAME = "images", "features"


def export_onnx(
    deployed: nn.Module,
    path: str | Path,
    image_size: tuple[int, int],
    opset: int = 17,
    dynamic_batch: bool = True,
    verify: bool = True,
) -> float | None:
    """Write `deployed` (eval mode, on CPU) as ONNX with input "images" (B, 3, H, W) float32 and output
    "features" (B, D); the batch axis is dynamic unless dynamic_batch=False.

    Uses the TorchScript-based exporter (`dynamo=False`): the deployed model is a plain CNN, which it exports
    for every opset 9-20 without extra dependencies. With verify=True, runs the file with onnxruntime on a
    random batch of 3 (1 for a static batch) and returns the max abs difference to PyTorch; else None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(deployed).cpu().eval()
    height, width = image_size
    example = torch.randn(2 if dynamic_batch else 1, 3, height, width)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                dynamo=False,
            )
    except OSError as exc:  # the file could not be written: not an opset problem
        raise OccreidError(
            f"cannot write the ONNX file {path} ({exc.strerror or type(exc).__name__})"
        ) from None
    except Exception as exc:
        raise OccreidError(f"ONNX export to {path} failed at opset {opset}: {exc} (try --opset 17)") from None
    if not verify:
        return None
    return verify_onnx(model, path, image_size, batch=3 if dynamic_batch else 1)


@torch.no_grad()
def verify_onnx(
    deployed: nn.Module, path: str | Path, image_size: tuple[int, int], batch: int = 3, seed: int = 0
) -> float:
    """Max abs difference between onnxruntime (CPU) on `path` and `deployed` on the same random batch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise OccreidError("verifying the ONNX file needs onnxruntime: pip install 'occreid[onnx]'") from None
    model = copy.deepcopy(deployed).cpu().eval()
    x = torch.randn(batch, 3, *image_size, generator=torch.Generator().manual_seed(seed))
    expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    if got.shape != expected.shape:
        raise OccreidError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(got - expected).max())
