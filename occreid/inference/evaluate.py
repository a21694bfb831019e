"""Evaluating a deployed model (f_G, images only) on a dataset's query/gallery split, whatever its file: what
`occreid eval` does with an .onnx file or `--runtime onnx`, and what `occreid export --int8 --check-root`
compares fp32 with int8 on.

    loaded = load_inference_model("model.onnx")
    output, test_set = evaluate_deployed(loaded, deployed_config(loaded, "synthocc", "data/synthocc"))
    output.result.mAP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from occreid.config import Config, apply_overrides
from occreid.errors import OccreidError


def deployed_config(
    loaded: Any, dataset: str | None, root: str | Path | None, overrides: list[str] | None = None
) -> Config:
    """The evaluation config of an `InferenceModel`: its training config (a checkpoint) or the defaults with
    the preprocessing and settings its metadata records (an .onnx file), the test feature f_G, the test
    split `dataset` at `root`, then `overrides` (`key=value`, e.g. eval.rerank=true)."""
    cfg = loaded.cfg.model_copy(deep=True) if loaded.cfg is not None else Config()
    settings = [
        f"data.image_size=[{loaded.image_size[0]},{loaded.image_size[1]}]",
        f"data.mean=[{','.join(map(str, loaded.mean))}]",
        f"data.std=[{','.join(map(str, loaded.std))}]",
        f"eval.flip={str(loaded.flip).lower()}",
        f"eval.metric={loaded.metric}",
        f"eval.normalize={str(loaded.normalize).lower()}",
        f"eval.batch_size={loaded.batch_size}",
        "model.test_feature=f_G",
        "train.amp=none",
        "train.channels_last=false",
    ]
    if dataset is not None:
        settings.append(f"data.test_dataset={dataset}")
    if root is not None:
        settings.append(f"data.test_root={root}")
    cfg = apply_overrides(cfg, settings + list(overrides or []))
    if loaded.cfg is None and (cfg.data.test_dataset is None or cfg.data.test_root is None):
        raise OccreidError(
            f"{loaded.path} holds a model, not its dataset: evaluate it with --dataset NAME --root DIR"
        )
    return cfg


def evaluate_deployed(loaded: Any, cfg: Config, device: str = "cpu") -> tuple[Any, Any]:
    """(`occreid.evaluation.evaluate.EvalOutput`, the test split) of the deployed model on cfg's test split
    (images only; the split's loader feeds it as it feeds `occreid eval` with a checkpoint)."""
    from occreid.data.splits import check_split_images, check_test_split, load_test_split
    from occreid.evaluation.evaluate import evaluate_model
    from occreid.utils.device import resolve_device

    test_set = load_test_split(cfg)
    check_test_split(test_set, "evaluating a deployed model")
    check_split_images(test_set, splits=("query", "gallery"))
    target = torch.device("cpu") if loaded.runtime == "onnx" else resolve_device(device, option="--device")
    loaded.model.to(target)
    output = evaluate_model(loaded.model, cfg, test_set.query, test_set.gallery, target)
    output.settings["runtime"] = loaded.runtime
    output.settings["precision"] = loaded.precision
    return output, test_set
