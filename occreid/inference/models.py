"""Loading a trained model for inference: the training method with every branch (`load_method`), its deployed
f_G module (`load_deployed_model`), and, whatever the file, a model ready to embed images
(`load_inference_model`: a .pt checkpoint on torch or ONNX Runtime, an exported .onnx file on ONNX Runtime).
Every command that embeds images loads its model through `load_inference_model`."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from occreid.config import Config, apply_overrides
from occreid.errors import OccreidError
from occreid.methods import build_model
from occreid.modeling.checkpoint import checkpoint_config, load_checkpoint, load_weights
from occreid.utils.provenance import config_sha256, init_of

RUNTIMES = ("auto", "torch", "onnx")

# How every deployed model's input is resized: as the test loader does (occreid.data.transforms.Resize).
RESIZE = "bicubic"


def load_method(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None
) -> tuple[nn.Module, Config]:
    """The training method (with all branches) from a checkpoint, in eval mode. `overrides` (`key=value`)
    change evaluation settings such as `model.test_feature` or `eval.rerank` on top of the stored config."""
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.model.pretrained = False  # the checkpoint holds the weights
    method = build_model(cfg, num_classes=state["num_classes"])
    changed = tuple(
        k for k in (t.split("=", 1)[0] for t in overrides or []) if not k.startswith("data.test_")
    )
    load_weights(method, state, path, cfg, checkpoint_config(state, path), action="evaluate", changed=changed)
    return method.to(device).eval(), cfg


def load_deployed_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The pose-free deployed module (images -> (B, D) features) of a checkpoint, and its config."""
    method, cfg = load_method(path, "cpu")
    return method.deploy().to(device).eval(), cfg


@dataclass
class InferenceModel:
    """A model that embeds images, with everything needed to feed it and to compare its features.

    `model` maps a (B, 3, H, W) normalised float tensor to (B, D) features: a torch module or an
    `occreid.inference.onnx_model.OnnxModel`. `source_sha256` is the content hash of the training checkpoint
    behind it (the checkpoint itself, or the one an .onnx file was exported from): two models with the same
    hash and precision give the same features. `cfg` is the training config (None for an .onnx file).
    """

    model: Any
    path: Path
    runtime: str  # "torch" or "onnx"
    precision: str  # "fp32" or "int8"
    image_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    flip: bool
    metric: str
    normalize: bool
    batch_size: int
    feature_dim: int | None
    source_sha256: str | None
    cfg: Config | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, model: Any, cfg: Config, path: str | Path, runtime: str = "torch") -> InferenceModel:
        """`model` (fp32) with the preprocessing and settings of the training config `cfg`, identified by the
        content hash of the checkpoint at `path`."""
        from occreid.utils.hashing import file_sha256

        path = Path(path)
        return cls(
            model=model,
            path=path,
            runtime=runtime,
            precision="fp32",
            image_size=(int(cfg.data.image_size[0]), int(cfg.data.image_size[1])),
            mean=list(cfg.data.mean),
            std=list(cfg.data.std),
            flip=bool(cfg.eval.flip),
            metric=cfg.eval.metric,
            normalize=bool(cfg.eval.normalize),
            batch_size=int(cfg.eval.batch_size),
            feature_dim=None,
            source_sha256=file_sha256(path) if path.is_file() else None,
            cfg=cfg,
            provenance={"method": cfg.model.name, "backbone": cfg.model.backbone},
        )


def _git_commit(checkpoint: Path) -> str | None:
    """The commit the checkpoint's run trained at (its run folder's environment.json), if recorded."""
    try:
        return json.loads((checkpoint.parent / "environment.json").read_text()).get("git_commit")
    except (OSError, ValueError, AttributeError):
        return None


def export_metadata(checkpoint: str | Path, feature_dim: int, precision: str = "fp32") -> dict[str, Any]:
    """The occreid ONNX metadata (occreid.inference.onnx_model) of the deployed model of `checkpoint`."""
    from occreid import __version__
    from occreid.utils.hashing import file_sha256

    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    stored = checkpoint_config(state, checkpoint)
    return {
        "image_size": list(stored.data.image_size),
        "mean": list(stored.data.mean),
        "std": list(stored.data.std),
        "resize": RESIZE,
        "flip": bool(stored.eval.flip),
        "feature": "f_G",
        "feature_dim": int(feature_dim),
        "metric": stored.eval.metric,
        "normalize": bool(stored.eval.normalize),
        "batch_size": int(stored.eval.batch_size),
        "precision": precision,
        "provenance": {
            "source_checkpoint": checkpoint.name,
            "source_sha256": file_sha256(checkpoint),
            "method": stored.model.name,
            "backbone": stored.model.backbone,
            "dataset": stored.data.dataset,
            "occreid_version": __version__,
            "git_commit": _git_commit(checkpoint),
            # the keys and hashing of every other result (occreid.utils.provenance); the training checkout's
            # uncommitted changes are not recorded with a checkpoint
            "git_dirty": None,
            "config_sha256": config_sha256(state["config"]),
            "init": init_of(state["config"]),
        },
    }


def _from_onnx(path: Path, device: str, threads: int | None) -> InferenceModel:
    from occreid.inference.onnx_model import OnnxModel

    model = OnnxModel(path, device=device, threads=threads)
    meta = model.metadata()
    provenance = dict(meta.get("provenance") or {})
    return InferenceModel(
        model=model,
        path=path,
        runtime="onnx",
        precision=meta["precision"],
        image_size=(int(meta["image_size"][0]), int(meta["image_size"][1])),
        mean=[float(m) for m in meta["mean"]],
        std=[float(s) for s in meta["std"]],
        flip=bool(meta["flip"]),
        metric=meta.get("metric", "euclidean"),
        normalize=bool(meta.get("normalize", True)),
        batch_size=int(meta.get("batch_size", 128)),
        feature_dim=int(meta["feature_dim"]),
        source_sha256=provenance.get("source_sha256"),
        provenance=provenance,
    )


def onnx_in_memory(deployed: nn.Module, image_size: tuple[int, int], atol: float = 1e-3) -> bytes:
    """The ONNX bytes of a deployed module, checked against PyTorch on a random batch (max abs difference
    <= atol), for `--runtime onnx` with a checkpoint: the speed of ONNX Runtime without managing a file."""
    from occreid.modeling.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="occreid-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        max_diff = export_onnx(deployed, path, image_size)
        if max_diff is None or max_diff > atol:
            raise OccreidError(
                f"the in-memory ONNX export differs from PyTorch by {max_diff:.3g} > {atol}; use --runtime "
                "torch"
            )
        return path.read_bytes()


def _from_checkpoint(path: Path, runtime: str, device: str, threads: int | None) -> InferenceModel:
    deployed, cfg = load_deployed_model(path, device="cpu")
    if runtime == "torch":
        return InferenceModel.from_config(deployed, cfg, path)
    from occreid.inference.onnx_model import OnnxModel

    source = onnx_in_memory(deployed, tuple(cfg.data.image_size))
    model = OnnxModel(source, device=device, threads=threads, name=f"{path} (exported in memory)")
    return InferenceModel.from_config(model, cfg, path, runtime="onnx")


def load_inference_model(
    path: str | Path, runtime: str = "auto", device: str = "auto", threads: int | None = None
) -> InferenceModel:
    """The model of a training checkpoint (.pt) or of an exported .onnx file, ready to embed images.

    runtime: "auto" follows the file (a checkpoint runs on torch, an .onnx file on ONNX Runtime); "onnx" with
    a checkpoint exports its deployed model in memory, checks it against PyTorch and runs it on ONNX Runtime;
    "torch" with an .onnx file is refused. device: where ONNX Runtime runs ("auto": the CUDA provider where
    present); a torch model is returned on the CPU (FeatureExtractor moves it). threads: ONNX Runtime's
    intra-op threads (default torch's).
    """
    path = Path(path)
    if runtime not in RUNTIMES:
        raise OccreidError(f"--runtime {runtime}: unknown; use {', '.join(RUNTIMES)}")
    if not path.is_file():
        if path.suffix != ".onnx":
            load_checkpoint(path)  # its "is a folder, it holds best.pt ..." or "not found" message
        raise OccreidError(f"model file not found: {path}")
    if path.suffix == ".onnx":
        if runtime == "torch":
            raise OccreidError(
                f"--runtime torch cannot run {path}: an .onnx file runs on ONNX Runtime; give its training "
                "checkpoint (.pt) for torch, or leave --runtime out"
            )
        return _from_onnx(path, device, threads)
    return _from_checkpoint(path, "torch" if runtime == "auto" else runtime, device, threads)
