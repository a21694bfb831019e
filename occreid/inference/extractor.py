"""Turn images into feature vectors with any model that maps (B, 3, H, W) normalised images to (B, D)
features.

>>> import torch
>>> from occreid.inference import FeatureExtractor
>>> model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # (B, 3, H, W) -> (B, 3)
>>> extractor = FeatureExtractor(model, image_size=(64, 32), device="cpu", progress=False)
>>> images = [torch.randint(0, 256, (64, 32, 3), dtype=torch.uint8).numpy() for _ in range(5)]
>>> extractor(images).shape  # a list of paths, PIL images, HxWx3 uint8 arrays or a (B, 3, H, W) tensor
torch.Size([5, 3])
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError
from occreid.utils.files import atomic_write

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)  # decode workers (benchmarks/bench_inference.py measures them)
PREFETCH_BATCHES = 2  # batches decoded ahead of the model


class FeatureExtractor:
    """Batched, gradient-free feature extraction with optional flip averaging.

    Args:
        model: a torch module, or an `occreid.inference.onnx_model.OnnxModel`; `model(images)` with images
            (B, 3, H, W) returns (B, D).
        image_size: (height, width) images are resized to (bicubic with antialiasing, as in training and
            `occreid eval`).
        mean, std: per-channel normalisation applied after scaling pixels to [0, 1].
        batch_size: images per forward pass.
        device: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ... (where a torch model runs; an
            OnnxModel places itself and gets its inputs on the CPU). The torch module is moved there, put in
            eval mode and, on the CPU, into the channels_last memory layout, in place: the same values,
            1.3-1.4x faster for the demo's models (benchmarks/results/bench_torch_variants.md).
        flip: also embed the horizontally flipped image and average the two features:
            f = (f(x) + f(flip x)) / 2.
        progress: show a tqdm bar.
        workers: threads that decode and resize images while the model embeds the batch before; 0 decodes
            in the calling thread, one batch after another.

    `__call__(inputs)` accepts a list of image paths, PIL images or HxWx3 uint8 arrays, a single one of those
    (N = 1), a (B, H, W, 3) uint8 array, or one (B, 3, H, W) float tensor that is already resized and
    normalised; it returns a (N, D) float32 tensor on the CPU.
    """

    def __init__(
        self,
        model: Any,
        image_size: tuple[int, int] = (384, 128),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 64,
        device: str = "auto",
        flip: bool = False,
        progress: bool = True,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        import torch

        from occreid.data.transforms import Resize, ToTensorNormalize
        from occreid.inference.onnx_model import OnnxModel

        if batch_size < 1:
            raise OccreidError(f"batch_size must be >= 1, got {batch_size}")
        from occreid.utils.device import resolve_device

        self.device = resolve_device("cpu" if isinstance(model, OnnxModel) else device, option="--device")
        self.channels_last = self.device.type == "cpu" and not isinstance(model, OnnxModel)
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self._resize = Resize(self.image_size)
        self._to_tensor = ToTensorNormalize(mean, std)
        self.batch_size = batch_size
        self.flip = flip
        self.progress = progress
        self.workers = max(0, int(workers))

    @classmethod
    def for_config(
        cls, model: Any, cfg: Any, device: str = "auto", batch_size: int | None = None, progress: bool = True
    ) -> FeatureExtractor:
        """An extractor with the image size, normalisation, flip and batch size of an occreid `Config`."""
        return cls(
            model,
            image_size=tuple(cfg.data.image_size),
            mean=cfg.data.mean,
            std=cfg.data.std,
            batch_size=batch_size or cfg.eval.batch_size,
            device=device,
            flip=cfg.eval.flip,
            progress=progress,
        )

    @classmethod
    def for_model(
        cls, loaded: Any, device: str = "auto", batch_size: int | None = None, progress: bool = True
    ) -> FeatureExtractor:
        """An extractor set up as an `occreid.inference.models.InferenceModel` says (its preprocessing)."""
        return cls(
            loaded.model,
            image_size=loaded.image_size,
            mean=loaded.mean,
            std=loaded.std,
            batch_size=batch_size or loaded.batch_size,
            device=device,
            flip=loaded.flip,
            progress=progress,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        batch_size: int | None = None,
        progress: bool = True,
        runtime: str = "auto",
    ) -> FeatureExtractor:
        """The pose-free deployed model of an occreid checkpoint (.pt) or exported .onnx file, set up as its
        config or metadata says. runtime: "auto" (follows the file), "onnx" or "torch"
        (occreid.inference.models.load_inference_model).

        Example: `FeatureExtractor.from_checkpoint("runs/demo/pgfl_kd/best.pt")(["q.jpg"])` -> (1, D) tensor.
        """
        from occreid.inference.models import load_inference_model

        if not Path(path).is_file():
            raise OccreidError(f"checkpoint not found: {path}")
        loaded = load_inference_model(path, runtime=runtime, device=device)
        return cls.for_model(loaded, device=device, batch_size=batch_size, progress=progress)

    def _load(self, item: Any):
        """One path / PIL image / HxWx3 uint8 array -> (3, H, W) float tensor, resized and normalised exactly
        as the test loader does (occreid.data.transforms)."""
        from PIL import Image

        from occreid.data.images import read_image

        if isinstance(item, (str, Path)):
            image = read_image(item)
        elif isinstance(item, Image.Image):
            image = item.convert("RGB")
        elif isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3:
                raise OccreidError(f"image arrays must be HxWx3 uint8 RGB, got shape {item.shape}")
            image = Image.fromarray(np.ascontiguousarray(item.astype(np.uint8, copy=False)))
        else:
            raise OccreidError(
                f"cannot extract features from a {type(item).__name__}; give paths, PIL images, HxWx3 uint8 "
                "arrays or a (B, 3, H, W) tensor"
            )
        image, _ = self._resize(image, None)
        return self._to_tensor(image, None)[0]

    def _forward(self, batch):
        import torch

        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.flip:  # one pass over both: f = (f(x) + f(flip x)) / 2
            both = self.model(torch.cat([batch, torch.flip(batch, dims=[3])]))
            features = (both[: len(batch)] + both[len(batch) :]) / 2.0
        else:
            features = self.model(batch)
        if features.ndim != 2:
            raise OccreidError(f"the model must return (B, D) features, got shape {tuple(features.shape)}")
        return features.float().cpu()

    def __call__(self, inputs: Any):
        """Features (N, D) float32 CPU tensor of N inputs (see the class docstring for the accepted kinds)."""
        import torch
        from PIL import Image
        from tqdm import tqdm

        if isinstance(inputs, torch.Tensor):
            if inputs.ndim != 4 or inputs.shape[1] != 3:
                raise OccreidError(f"a tensor input must be (B, 3, H, W), got shape {tuple(inputs.shape)}")
            batches = (
                inputs[s : s + self.batch_size].float() for s in range(0, len(inputs), self.batch_size)
            )
            total = len(inputs)
        else:
            if isinstance(inputs, (str, Path, Image.Image)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim != 4
            ):
                inputs = [inputs]  # one image
            items = list(inputs)
            total = len(items)
            batches = self._image_batches(items)
        out = []
        with (
            torch.inference_mode(),
            tqdm(total=total, desc="features", unit="img", disable=not self.progress) as bar,
        ):
            for batch in batches:
                out.append(self._forward(batch))
                bar.update(len(batch))
        if not out:
            raise OccreidError("no images to extract features from")
        return torch.cat(out, dim=0)

    def _image_batches(self, items: list[Any]) -> Iterator[Any]:
        """(B, 3, H, W) batches of `items` in order, decoded ahead of the model by a pool of `workers` threads
        (PIL and the resize release the GIL; on a quiet 2-core CPU threads beat worker processes end to end,
        benchmarks/results/bench_inference_quiet.md), the next PREFETCH_BATCHES batches while the caller runs
        the model on the current one."""
        import torch

        starts = range(0, len(items), self.batch_size)
        if self.workers == 0 or len(items) == 1:
            for s in starts:
                yield torch.stack([self._load(item) for item in items[s : s + self.batch_size]])
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="occreid-decode") as pool:
            pending: deque[list[Future]] = deque()
            for s in starts:
                pending.append([pool.submit(self._load, item) for item in items[s : s + self.batch_size]])
                if len(pending) > PREFETCH_BATCHES:
                    yield torch.stack([f.result() for f in pending.popleft()])
            while pending:
                yield torch.stack([f.result() for f in pending.popleft()])


def save_features(
    path: str | Path,
    features: Any,
    paths: Sequence[str] | None = None,
    pids: Any = None,
    camids: Any = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write features (N, D) and optional per-row paths / pids / camids to a .npz or .safetensors file
    (atomic).

    safetensors stores tensors only, so paths and meta go into its JSON header metadata.
    """
    path = Path(path)
    features = np.asarray(
        features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float32
    )
    if features.ndim != 2:
        raise OccreidError(f"features must be (N, D), got shape {features.shape}")
    n = len(features)
    arrays: dict[str, np.ndarray] = {"features": features}
    for name, values in (("pids", pids), ("camids", camids)):
        if values is not None:
            arrays[name] = np.asarray(
                values.cpu() if hasattr(values, "cpu") else values, dtype=np.int64
            ).reshape(-1)
    if paths is not None:
        arrays["paths"] = np.asarray([str(p) for p in paths])
    for name, values in arrays.items():
        if len(values) != n:
            raise OccreidError(f"{name} has {len(values)} entries but there are {n} feature rows")
    if path.suffix not in (".npz", ".safetensors"):
        raise OccreidError(f"feature file {path} must end in .npz or .safetensors")
    with atomic_write(path) as fh:
        if path.suffix == ".safetensors":
            try:
                from safetensors.numpy import save
            except ImportError:
                raise OccreidError(
                    "saving .safetensors needs `pip install safetensors`; or use a .npz path"
                ) from None
            header = {"meta": json.dumps(meta or {})}
            if paths is not None:
                header["paths"] = json.dumps([str(p) for p in paths])
            fh.write(save({k: v for k, v in arrays.items() if k != "paths"}, metadata=header))
        else:
            np.savez(fh, meta=np.asarray(json.dumps(meta or {})), **arrays)
    return path


def load_features(path: str | Path) -> dict[str, Any]:
    """Read a file written by `save_features`: {"features": (N, D) float32 array, "paths": list[str] | None,
    "pids": (N,) int64 | None, "camids": (N,) int64 | None, "meta": dict}."""
    path = Path(path)
    if not path.is_file():
        raise OccreidError(f"feature file not found: {path}")
    out: dict[str, Any] = {"paths": None, "pids": None, "camids": None, "meta": {}}
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors import safe_open
            except ImportError:
                raise OccreidError(f"reading {path} needs `pip install safetensors`") from None
            with safe_open(str(path), framework="numpy") as fh:
                header = fh.metadata() or {}
                for key in fh.keys():  # noqa: SIM118 (safe_open is not iterable)
                    out[key] = fh.get_tensor(key)
            out["meta"] = json.loads(header.get("meta", "{}"))
            if "paths" in header:
                out["paths"] = json.loads(header["paths"])
        else:
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    out[key] = data[key]
            out["meta"] = json.loads(str(out["meta"])) if isinstance(out["meta"], np.ndarray) else {}
            if out["paths"] is not None:
                out["paths"] = [str(p) for p in out["paths"]]
    except (OSError, ValueError, KeyError) as exc:
        raise OccreidError(f"cannot read feature file {path}: {exc}") from None
    if "features" not in out:
        raise OccreidError(f"{path} holds no 'features' array; was it written by save_features?")
    return out
