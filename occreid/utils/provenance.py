"""Where a result comes from: the code (git commit, uncommitted changes, occreid's version), the resolved
config (a hash) and how the model was initialised. Every study record, the demo's results.json and exported
models carry the same keys:

    provenance(cfg.model_dump(mode="json"))
    -> {"git_commit": "3f1c..." or None, "git_dirty": False or None, "config_sha256": "9a0b...",
        "occreid_version": "0.1.0", "init": "imagenet"}

`config_sha256` hashes the config without `train.output_dir`, `train.device` and `data.root` (places, not
settings), so two runs of the same row
and seed have the same hash wherever they ran. `git_commit` and `git_dirty` are None outside a git checkout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

# Config keys that say where a run ran or read its files, not what it is: left out of config_sha256.
PLACE_KEYS = (("train", "output_dir"), ("train", "device"), ("data", "root"))
# Backbones whose ImageNet weights cover only part of the model (the rest starts from random weights).
PARTLY_PRETRAINED = {"vit_hybrid_mnv2": "imagenet_stem"}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(commit of the checkout occreid runs from, whether it has uncommitted changes); (None, None) outside
    a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit.strip(), None if status is None else bool(status.strip())


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of the resolved config (a model_dump) without PLACE_KEYS, keys sorted."""
    kept = copy.deepcopy(config)
    for section, key in PLACE_KEYS:
        kept.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def init_of(config: dict[str, Any]) -> str:
    """How the model's weights started: "imagenet", "imagenet_stem" (hybrid ViT: ImageNet stem, random
    transformer blocks), "file:<path>" or "random"."""
    model = config.get("model", {})
    pretrained = model.get("pretrained")
    if isinstance(pretrained, str):
        return f"file:{pretrained}"
    if pretrained:
        return PARTLY_PRETRAINED.get(model.get("backbone", ""), "imagenet")
    return "random"


def provenance(config: dict[str, Any]) -> dict[str, Any]:
    """The provenance record of a result from the resolved config (`Config.model_dump(mode="json")`)."""
    from occreid import __version__

    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "config_sha256": config_sha256(config),
        "occreid_version": __version__,
        "init": init_of(config),
    }
