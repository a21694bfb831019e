"""An exported model on ONNX Runtime, and the occreid metadata an exported file carries.

`occreid export` stores one JSON object under the ONNX metadata key "occreid" (`METADATA_KEY`):

    {"format": "occreid-onnx-v1",
     "image_size": [H, W], "mean": [3], "std": [3], "resize": "bicubic", "flip": bool,  # preprocessing
     "feature": "f_G", "feature_dim": D, "metric": "euclidean", "normalize": bool, "batch_size": int,
     "precision": "fp32" | "int8",
     "provenance": {"source_checkpoint": file name, "source_sha256": hex, "method": name, "backbone": name,
                    "dataset": name, "occreid_version": str, "git_commit": str | None,
                    "config_sha256": hex, "init": what the backbone started from}}

`source_sha256` is the content hash of the training checkpoint the file was exported from: it identifies the
model, so an index built with the checkpoint accepts its fp32 export. onnx and onnxruntime are optional
(`pip install -e ".[onnx]"`) and imported only when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occreid.errors import OccreidError

METADATA_KEY = "occreid"
METADATA_FORMAT = "occreid-onnx-v1"
PRECISIONS = ("fp32", "int8")
PREPROCESSING_KEYS = ("image_size", "mean", "std", "flip")
EXPORT_HINT = "export it with `occreid export --checkpoint CKPT --out FILE.onnx`"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise OccreidError(
            'running .onnx models needs onnxruntime: pip install -e ".[onnx]" in a clone of occreid'
        ) from None
    return onnxruntime


def write_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Store `meta` (see the module docstring) in the ONNX file at `path`, in place."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps({"format": METADATA_FORMAT, **meta}))
    onnx.save(model, str(path))


def read_metadata(session: Any, path: str | Path) -> dict[str, Any]:
    """The occreid metadata of a loaded session; a file without it (not written by `occreid export`) is
    refused with what to do instead."""
    custom = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in custom:
        raise OccreidError(
            f"{path} has no occreid metadata (preprocessing, feature, source model), so occreid cannot know "
            f"how to feed it; {EXPORT_HINT}, or wrap it yourself with FeatureExtractor(OnnxModel(...), "
            "image_size=..., mean=..., std=...)"
        )
    try:
        meta = json.loads(custom[METADATA_KEY])
    except json.JSONDecodeError:
        raise OccreidError(f"{path}: its occreid metadata is not valid JSON; {EXPORT_HINT}") from None
    missing = [k for k in (*PREPROCESSING_KEYS, "feature_dim", "precision") if k not in meta]
    if meta.get("format") != METADATA_FORMAT or missing:
        raise OccreidError(
            f"{path}: occreid metadata of another format ({meta.get('format')!r}, missing {missing}); "
            f"{EXPORT_HINT}"
        )
    return meta


def providers_for(device: str | torch.device) -> list:
    """ONNX Runtime execution providers for "auto" / "cpu" / "cuda[:N]": the CUDA provider first where it is
    present, on GPU N ("auto" and "cuda": GPU 0), then the CPU for what it cannot run."""
    name = str(device)
    if name == "cpu":
        return ["CPUExecutionProvider"]
    index = 0
    if name != "auto":
        try:
            parsed = torch.device(name)
        except (RuntimeError, ValueError):
            parsed = None
        if parsed is None or parsed.type != "cuda":
            raise OccreidError(f"--device {name}: ONNX Runtime runs on auto, cpu, cuda or cuda:N")
        index = parsed.index or 0
    available = _onnxruntime().get_available_providers()
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if name != "auto":
        raise OccreidError(
            f"--device {name}: this onnxruntime has no CUDA provider; install onnxruntime-gpu or use cpu"
        )
    return ["CPUExecutionProvider"]


def _check_cuda_started(session: Any, device: str, name: str) -> None:
    """ONNX Runtime falls back to the CPU, with only a log line, when the CUDA provider cannot start (no
    driver, a missing CUDA or cuDNN library): a GPU asked for by name must really be in use."""
    if str(device).startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        raise OccreidError(
            f"--device {device}: ONNX Runtime could not start its CUDA provider for {name} (check that the "
            "CUDA and cuDNN libraries onnxruntime-gpu needs are installed), or use cpu"
        )


class OnnxModel:
    """A (B, 3, H, W) float32 tensor -> (B, D) float32 tensor callable over an ONNX Runtime session, so it
    drops in where FeatureExtractor and `extract_features` take a torch module (`.to()` and `.eval()` are
    no-ops: ONNX Runtime places the model itself).

    Args:
        source: path of an .onnx file, or its bytes (an export held in memory).
        device: "auto" (CUDA provider where present), "cpu", "cuda" or "cuda:N".
        threads: intra-op threads; default torch's thread count, so both runtimes use the same.
        name: how messages name the model.
    """

    def __init__(
        self,
        source: str | Path | bytes,
        device: str | torch.device = "auto",
        threads: int | None = None,
        name: str = "",
    ) -> None:
        ort = _onnxruntime()
        self.name = name or (str(source) if not isinstance(source, bytes) else "the in-memory export")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.threads = options.intra_op_num_threads
        try:
            self.session = ort.InferenceSession(
                source if isinstance(source, bytes) else str(source), options, providers=providers_for(device)
            )
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / ... types
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise OccreidError(
                f"{self.name} is not a readable ONNX model ({reason}); re-export it ({EXPORT_HINT})"
            ) from None
        _check_cuda_started(self.session, device, self.name)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def metadata(self) -> dict[str, Any]:
        return read_metadata(self.session, self.name)

    def to(self, *_: Any, **__: Any) -> OnnxModel:
        return self

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run([self.output_name], {self.input_name: x})
        return torch.from_numpy(out)
