"""int8 models from an exported fp32 ONNX model, and a speed comparison of two ONNX models on one batch.

- static (`quantize_int8`, ONNX Runtime's `quantize_static`, QDQ format): activations uint8 per tensor with
  MinMax ranges over calibration images sampled deterministically from a folder. Best for CNNs, whose
  convolutions it quantises.
- dynamic (`quantize_int8_dynamic`, `quantize_dynamic`): activation ranges measured on each batch at run
  time, no calibration; only products with weights (MatMul) are quantised, since ONNX Runtime's dynamic
  convolutions wrecked CNN features. For ViTs it measured faster and closer to fp32 than static
  (docs/deploy.md); a model without such products (a CNN) is refused.

Weights are int8 per output channel (symmetric) in both.

    images = sample_calibration_images(all_images, 256)
    quantize_int8("model.onnx", "model-int8.onnx", images, image_size=(256, 128), mean=..., std=...)
    quantize_int8_dynamic("model.onnx", "model-int8.onnx")
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from occreid.errors import OccreidError

QUANTIZATIONS = ("static", "dynamic")
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 16


def sample_calibration_images(images: Sequence[Path], count: int) -> list[Path]:
    """`count` of `images` (all when fewer), the same ones for the same list on every run: sorted, then a
    seeded sample (`CALIBRATION_SEED`) kept in sorted order."""
    if count < 1:
        raise OccreidError(f"--calibration-images {count}: give at least 1 (a few hundred is typical)")
    ordered = sorted(Path(p) for p in images)
    if len(ordered) <= count:
        return ordered
    picked = np.random.default_rng(CALIBRATION_SEED).choice(len(ordered), size=count, replace=False)
    return [ordered[i] for i in sorted(picked)]


def _batches(images: Sequence[Path], image_size: tuple[int, int], mean, std):
    """Normalised (B, 3, H, W) float32 arrays of `images`, preprocessed exactly as for inference."""
    from occreid.data.images import read_image
    from occreid.data.transforms import Resize, ToTensorNormalize

    resize, to_tensor = Resize(image_size), ToTensorNormalize(mean, std)
    for s in range(0, len(images), CALIBRATION_BATCH):
        arrays = [
            to_tensor(resize(read_image(p), None)[0], None)[0].numpy()
            for p in images[s : s + CALIBRATION_BATCH]
        ]
        yield np.stack(arrays)


def calibration_batch(images: Sequence[Path], image_size: tuple[int, int], mean, std, size: int = 32):
    """The first `size` of `images` as one (B, 3, H, W) float32 tensor (to time models on)."""
    import torch

    return torch.from_numpy(np.concatenate(list(_batches(list(images)[:size], image_size, mean, std))))


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    images: Sequence[Path],
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Write the int8 (QDQ, per-channel) version of the fp32 ONNX model at `fp32_path` to `out_path`,
    calibrated on `images`. The model's metadata is not carried over (the caller writes it)."""
    from onnxruntime.quantization import CalibrationDataReader

    from occreid.modeling.export import INPUT_NAME

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _batches(images, image_size, mean, std)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _prepared(fp32_path) as prepared:
        quantize_static(
            prepared,
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def quantize_int8_dynamic(fp32_path: str | Path, out_path: str | Path) -> None:
    """Write the dynamically quantised int8 version of the fp32 ONNX model at `fp32_path` to `out_path`
    (int8 weights per output channel; activations quantised per batch at run time). The model's metadata is
    not carried over (the caller writes it)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _prepared(fp32_path) as prepared:
        quantize_dynamic(
            prepared,
            str(out_path),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],  # ConvInteger wrecked CNN features (cosine 0.5 to fp32)
        )
    if not any(node.op_type == "MatMulInteger" for node in onnx.load(str(out_path)).graph.node):
        Path(out_path).unlink()
        raise OccreidError(
            "--quantization dynamic found no matrix product with weights to quantise in this model (a CNN "
            "keeps its convolutions in fp32 there); use static int8: --int8 --calibration DIR"
        )


@contextmanager
def _prepared(fp32_path: str | Path) -> Iterator[str]:
    """The model after ONNX Runtime's quantisation pre-processing (shape inference, graph clean-up), in a
    temporary file, with the quantiser's warnings off (e.g. "Axis 1 is out-of-range for weight 'bn.weight'":
    that weight is quantised per tensor then)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="occreid-int8-") as folder:
            prepared = str(Path(folder) / "prepared.onnx")
            quant_pre_process(str(fp32_path), prepared, skip_symbolic_shape=True)
            yield prepared
    finally:
        logging.disable(logging.NOTSET)


def images_per_second(models: Sequence, batch, runs: int = 5) -> list[float]:
    """Images per second of each model (a callable on a (B, 3, H, W) tensor) on `batch`: one warm-up call
    each, then `runs` rounds that call the models in turn (interleaved, so a busy machine slows all alike);
    the median per model."""
    for model in models:
        model(batch)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for i, model in enumerate(models):
            start = time.perf_counter()
            model(batch)
            times[i].append(time.perf_counter() - start)
    return [len(batch) / float(np.median(t)) for t in times]
