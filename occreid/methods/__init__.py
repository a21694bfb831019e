"""Every method occreid trains, one package each (docs/extending.md, "Add a method"):

    occreid/methods/<name>/__init__.py   what the method is, and its demo models (DEMO)
    occreid/methods/<name>/config.py     its config section `<name>.*` (CONFIG), where it has settings
    occreid/methods/<name>/method.py     its ReidMethod subclass and `build(cfg, num_classes)`
    occreid/methods/<name>/presets/      its ablation presets: YAML files of switches

METHODS is the registry: adding a method is its package and one line here. The packages are found by name,
so that the config (which needs each method's section) never imports a model.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from occreid.config import Config
    from occreid.config_fields import Section
    from occreid.modeling.base import ReidMethod

METHODS = ("baseline", "pgfl_kd", "ogfr")

_PACKAGE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class DemoModel:
    """One model of `occreid demo`: trains the packaged `configs/demo/<key>.yaml` on the shared SynthOcc."""

    key: str  # run folder under --out, key in results.json, configs/demo/<key>.yaml
    title: str
    pose_features: tuple[str, ...] = ()  # pose-at-test features (PGFL-KD's Table 8) reported beside f_G

    @property
    def config(self) -> str:
        return f"configs/demo/{self.key}.yaml"


def _package(name: str):
    return importlib.import_module(f"occreid.methods.{name}")


def config_sections() -> dict[str, type[Section]]:
    """Section name -> its class, for each method that has settings (`<name>/config.py`'s CONFIG)."""
    sections = {}
    for name in METHODS:
        if importlib.util.find_spec(f"occreid.methods.{name}.config") is not None:
            sections[name] = importlib.import_module(f"occreid.methods.{name}.config").CONFIG
    return sections


def build_model(cfg: Config, num_classes: int) -> ReidMethod:
    """The method named by cfg.model.name, for `num_classes` training identities."""
    from occreid.errors import OccreidError

    if num_classes < 2:
        raise OccreidError(f"the training set has {num_classes} identities; ReID training needs at least 2")
    return importlib.import_module(f"occreid.methods.{cfg.model.name}.method").build(cfg, num_classes)


def demo_models() -> list[DemoModel]:
    """The models `occreid demo` trains, in registry order."""
    return [model for name in METHODS for model in _package(name).DEMO]


def presets() -> dict[str, Path]:
    """Ablation preset name -> its YAML file, over every method."""
    return {p.stem: p for name in METHODS for p in sorted((_PACKAGE_DIR / name / "presets").glob("*.yaml"))}
