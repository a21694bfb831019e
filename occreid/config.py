"""Typed configuration, loaded from YAML with a `_base_` inheritance key and `key.path=value` overrides.

Every field has a default here, inside the package; files under `occreid/configs/` (also reachable as the
repository's `configs/`) only state what differs. Unknown keys and wrong types are errors that name the key.

    cfg = load_config("configs/occluded_duke/pgfl_kd.yaml", overrides=["train.lr=3e-4"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from occreid.errors import OccreidError

PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"
BASE_KEY = "_base_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dataset: str = "synthocc"  # a name from `occreid data list`
    root: str = "data/synthocc"
    # Test on another dataset's query/gallery (e.g. Market-1501 -> Occluded-REID); None: the training dataset.
    test_dataset: str | None = None
    test_root: str | None = None
    # Keypoint store (occreid.pose.store); None: `<root>/keypoints.npz`. Only methods that use pose read it.
    keypoints: str | None = None
    image_size: tuple[int, int] = (384, 128)  # (height, width)
    p: int = 4  # identities per batch
    k: int = 16  # images per identity
    num_workers: int = 2
    flip_prob: float = 0.5
    pad: int = 10
    erasing_prob: float = 0.5
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class PoseConfig(_Section):
    """How keypoints become the K = 8 part heatmaps H_k of the PGFL-KD paper (section 3.1)."""

    sigma: float = 1.0  # Gaussian std in feature-map cells
    conf_threshold: float = 0.2  # keypoints below this confidence are dropped
    merge: Literal["max", "sum"] = "max"  # how a group's keypoint Gaussians are merged
    softmax_temperature: float = 0.1  # H_k = softmax(merged / T) over positions
    empty_group: Literal["uniform", "zero"] = "zero"  # a group with no visible keypoint


class ModelConfig(_Section):
    name: Literal["baseline", "pgfl_kd"] = "pgfl_kd"
    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"
    # True: ImageNet weights from torchvision's cache; a path: a state dict file; False: random init.
    pretrained: bool | str = True
    last_stride: int = 1
    num_parts: int = 8
    # Which BNNeck feature is used at test time: "after" BN (BoT's default) or "before" it.
    neck_feat: Literal["before", "after"] = "after"
    # Feature matched at test (Table 8). f_G needs no pose; the others need query/gallery keypoints.
    test_feature: Literal["f_G", "f_P", "f_V", "f_F", "f_E"] = "f_G"
    # PGFL-KD ablation switches (Table 6 / Table 7).
    sab: bool = True  # body-part semantics aligned branch, S of SAB
    interaction: bool = True  # I: ReID loss on f_V = f_G + f_P instead of on f_P
    mcl: bool = True  # M: distil f_P into f_G
    sab_distill: Literal["mcl", "cl"] = "mcl"  # Table 7: multi-part contrastive or consistency loss
    feb: bool = True  # foreground-enhanced branch, S of FEB
    consistency: bool = True  # C: L_CL between f_G and sg(f_E)
    feb_similarity: Literal["cosine", "dot"] = "cosine"  # Eq. 2
    feb_temperature: float = 0.1  # a_ij = softmax(sim / T)
    mcl_similarity: Literal["cosine", "dot"] = "cosine"  # Eq. 5
    mcl_temperature: float = 0.1


class LossConfig(_Section):
    label_smoothing: float = 0.1
    triplet_margin: float | None = 0.3  # None: soft-margin triplet
    lambda_cl: float = 0.25
    lambda_mcl: float = 0.25


class TrainConfig(_Section):
    epochs: int = 120
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    milestones: list[int] = [30, 70]
    gamma: float = 0.1
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    sync_bn: bool = False
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    steps_per_epoch: int | None = None  # None: one pass over the training identities
    eval_period: int = 10  # epochs; 0: only at the end
    log_period: int = 20  # steps
    output_dir: str = "runs/default"


class EvalConfig(_Section):
    batch_size: int = 128
    metric: Literal["euclidean", "cosine"] = "euclidean"
    normalize: bool = True
    flip: bool = False
    rerank: bool = False
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    max_rank: int = 50


class Config(_Section):
    data: DataConfig = DataConfig()
    pose: PoseConfig = PoseConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _resolve_path(name: str | Path, relative_to: Path | None) -> Path:
    path = Path(name)
    candidates = [path] if path.is_absolute() else []
    if not path.is_absolute():
        if relative_to is not None:
            candidates.append(relative_to / path)
        candidates += [Path.cwd() / path, PACKAGE_CONFIG_DIR / path]
        if path.parts and path.parts[0] == "configs":
            candidates.append(PACKAGE_CONFIG_DIR.joinpath(*path.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise OccreidError(f"config file not found: {name} (looked in {', '.join(str(c) for c in candidates)})")


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in chain:
        raise OccreidError(f"config {path}: {BASE_KEY} chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise OccreidError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise OccreidError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    merged: dict[str, Any] = {}
    for base_name in [base] if isinstance(base, str) else base:
        base_path = _resolve_path(base_name, path.parent)
        merged = _deep_merge(merged, _read_yaml(base_path, chain + (path.resolve(),)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (["train", "lr"], 0.0003). The value is parsed as YAML."""
    if "=" not in text:
        raise OccreidError(f"override {text!r} must look like section.key=value, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise OccreidError(f"override {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


def build_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a Config; errors name the offending key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            else:
                problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
        raise OccreidError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (with `_base_` inheritance) and apply `section.key=value` overrides."""
    data = _read_yaml(_resolve_path(path, None)) if path is not None else {}
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(data, keys, value)
    return build_config(data, source=str(path) if path else "config")


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """A copy of `cfg` with `section.key=value` overrides applied and validated."""
    data = cfg.model_dump(mode="json")
    for text in overrides:
        keys, value = parse_override(text)
        _apply_override(data, keys, value)
    return build_config(data, source="overrides")


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config, e.g. next to a run's outputs."""
    Path(path).write_text(cfg.to_yaml())
