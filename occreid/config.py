"""Typed configuration, loaded from YAML with a `_base_` inheritance key and `key.path=value` overrides.

Every field has a default here, inside the package; files under `occreid/configs/` (also reachable as the
repository's `configs/`) only state what differs. Unknown keys and wrong types are errors that name the key.

Types are strict: an int field takes an integer (not `true` or "12"), a bool field `true`/`false` (not `yes`
or 1); a float field also takes an integer, and a tuple field a YAML list. YAML scalars follow YAML 1.2: `3e-4`
is a float and only true/false are booleans. An override of a text field (`data.root=2024`) keeps its text.

    cfg = load_config("configs/occluded_duke/pgfl_kd.yaml", overrides=["train.lr=3e-4"])
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from occreid.errors import OccreidError

PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"
BASE_KEY = "_base_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


# Tuples are written as YAML lists (and dumped as lists by `to_yaml`); strict mode alone would refuse a list.
_LIST_AS_TUPLE = BeforeValidator(lambda value: tuple(value) if isinstance(value, list) else value)


class DataConfig(_Section):
    dataset: str = "synthocc"  # a name from `occreid data list`
    root: str = "data/synthocc"
    # Test on another dataset's query/gallery (e.g. Market-1501 -> Occluded-REID); None: the training dataset.
    test_dataset: str | None = None
    test_root: str | None = None
    # Keypoint store (occreid.pose.store); None: `<root>/keypoints.npz`. Only methods that use pose read it.
    keypoints: str | None = None
    # The test set's store when it is another dataset (test_dataset); None: `<test_root>/keypoints.npz`.
    test_keypoints: str | None = None
    # Images the store lacks: an error (default), or true: "no pose" (every confidence 0), counted in a warning.
    allow_missing_keypoints: bool = False
    image_size: Annotated[tuple[int, int], _LIST_AS_TUPLE] = (384, 128)  # (height, width)
    p: int = 4  # identities per batch
    k: int = 16  # images per identity
    num_workers: int = 2
    flip_prob: float = 0.5
    pad: int = 10
    erasing_prob: float = 0.5
    mean: Annotated[tuple[float, float, float], _LIST_AS_TUPLE] = (0.485, 0.456, 0.406)
    std: Annotated[tuple[float, float, float], _LIST_AS_TUPLE] = (0.229, 0.224, 0.225)


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
    # ||.||^2 of Eq. 4 (and Table 7's SAB consistency): "mean" over channels (default, on the ReID losses'
    # scale; see docs/models.md) or "sum", the paper's squared norm literally (C times larger).
    cl_reduction: Literal["mean", "sum"] = "mean"
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
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy's seed range
    device: str = "auto"  # auto: cuda if available, else cpu
    # None: BoT's epoch (about one pass over the training images), which the papers' epoch counts assume.
    steps_per_epoch: int | None = None
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


OcclusionType = Literal["none", "top", "bottom", "left", "right", "block", "person"]
OccluderSource = Literal[
    "image", "background", "shape",
    "synthocc_vehicle", "synthocc_pole", "synthocc_board", "synthocc_person", "synthocc_clutter",
]  # fmt: skip


class OcclusionConfig(_Section):
    """Typed occlusion for paired holistic/occluded views (OGFR spec section 1; occreid.data.occlusion).

    Only methods that ask for paired views use it. Types: none (x~ = x), top/bottom (full width, height in
    `side_range` x H), left/right (full height, width in `side_range` x W), block (area in `block_area` x H x W
    anywhere), person (another identity, full height at the left or right, width in `side_range` x W).
    Sources: image (a crop of another training image, FED), background (a crop of another training image's
    outer columns), shape (synthetic shapes), synthocc_* (SynthOcc's occluder renderers).
    """

    types: Annotated[tuple[OcclusionType, ...], _LIST_AS_TUPLE] = (
        "none", "top", "bottom", "left", "right", "block", "person",
    )  # fmt: skip
    # Probabilities of `types` (same length; renormalised over the types not held out); None: uniform.
    type_probs: Annotated[tuple[float, ...] | None, _LIST_AS_TUPLE] = None
    sources: Annotated[tuple[OccluderSource, ...], _LIST_AS_TUPLE] = (
        "image", "background", "shape",
        "synthocc_vehicle", "synthocc_pole", "synthocc_board", "synthocc_person", "synthocc_clutter",
    )  # fmt: skip
    # Never drawn in training (kept for test-time views, `held_out=True`); their type indices stay valid.
    held_out_types: Annotated[tuple[OcclusionType, ...], _LIST_AS_TUPLE] = ()
    held_out_sources: Annotated[tuple[OccluderSource, ...], _LIST_AS_TUPLE] = ()
    side_range: Annotated[tuple[float, float], _LIST_AS_TUPLE] = (0.25, 0.5)  # FED: H/4-H/2 or W/4-W/2
    block_area: Annotated[tuple[float, float], _LIST_AS_TUPLE] = (0.1, 0.3)  # fraction of H x W
    block_ratio: Annotated[tuple[float, float], _LIST_AS_TUPLE] = (0.5, 2.0)  # height / width, log-uniform
    # A ViT patch is occluded (m = 1) when at least this fraction of its pixels is covered (`patch_mask`).
    mask_threshold: float = 0.5


class Config(_Section):
    data: DataConfig = DataConfig()
    pose: PoseConfig = PoseConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    occlusion: OcclusionConfig = OcclusionConfig()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's scalars where 1.1 differs: `3e-4` and `1e5` are floats (1.1: text)
    and only true/false are booleans (1.1 also reads yes/no/on/off/y/n as booleans)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)
_YAML_NULLS = ("", "~", "null", "Null", "NULL")
_UNKNOWN = object()  # marks an unknown key among a validation error's problems


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
        data = yaml.load(path.read_text(), Loader=_YamlLoader) or {}
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
    """`train.lr=3e-4` -> (["train", "lr"], 0.0003). The value is parsed as YAML, except for a text field
    (`str` or `str | None`, e.g. `data.root=2024`), which keeps the text as written (YAML quotes removed;
    `null` or nothing is None where the field allows it)."""
    if "=" not in text:
        raise OccreidError(f"override {text!r} must look like section.key=value, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    keys, raw = key.strip().split("."), raw.strip()
    try:
        value = yaml.load(raw, Loader=_YamlLoader) if raw else None
    except yaml.YAMLError:
        value = raw
    return keys, _as_field_text(_field_annotation(keys), raw, value)


def _field_annotation(keys: list[str]) -> Any:
    """The type annotation of the field `keys` names, or None where it names no field."""
    model: Any = Config
    annotation = None
    for key in keys:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
            return None
        annotation = model = model.model_fields[key].annotation
    return annotation


def _as_field_text(annotation: Any, raw: str, value: Any) -> Any:
    """For a field that takes text, the override's raw text where YAML read something else (2024, true)."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    if str not in members or isinstance(value, str):
        return value
    if type(None) in members and raw in _YAML_NULLS:
        return None
    if isinstance(value, bool) and bool in members:  # `model.pretrained=true` is the bool, not a path
        return value
    return raw if raw else value


def _apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise OccreidError(f"override {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


def _error_key(loc: tuple) -> str:
    """The dotted key of a validation error: the field names in `loc` (and list indices), without the
    union-member tags pydantic appends (`model.pretrained.bool`)."""
    model: Any = Config
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            parts.append(part)
            model = model.model_fields[part].annotation
        else:
            break
    return ".".join(parts)


def build_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a Config; errors name the offending key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, tuple[list[str], Any]] = {}
        for err in exc.errors():
            if err["type"] == "extra_forbidden":
                problems[".".join(str(part) for part in err["loc"])] = ([], _UNKNOWN)
                continue
            messages, _ = problems.setdefault(_error_key(err["loc"]), ([], err.get("input")))
            if err["msg"] not in messages:
                messages.append(err["msg"])
        text = [
            f"unknown key '{key}'"
            if value is _UNKNOWN
            else f"'{key}': {' or '.join(messages)} (got {value!r})"
            for key, (messages, value) in problems.items()
        ]
        raise OccreidError(f"{source}: " + "; ".join(text)) from None


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
