"""What a resumed run may change: nothing that decides what is trained, except the settings listed here.

A resume continues the run it finds, with the settings stored in its checkpoint. A different value of any
other setting is refused in one line naming it, because training would go on with the old value while
config.yaml recorded the new one (the optimiser's stored learning rates win, for instance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occreid.config import Config
from occreid.errors import OccreidError

# The one list of settings a resume may change (docs/usage.md): how long, how often to evaluate and log, where
# things are (the same data or run moved to another folder, a device), how fast data is read, and the
# pretrained file (a resume reads every weight from the checkpoint, never from model.pretrained).
SAFE_ON_RESUME = (
    "train.epochs",
    "train.eval_period",
    "train.log_period",
    "train.output_dir",
    "train.device",
    "train.dist_timeout_min",
    "train.dist_backend",
    "data.num_workers",
    "data.root",
    "data.test_root",
    "model.pretrained",
    "eval.batch_size",
)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_settings(cfg: Config, stored: Config) -> list[str]:
    """`key=new (the run's: old)` for every setting of `cfg` that differs from `stored` and is not safe to
    change on resume."""
    new, old = _flat(cfg.model_dump(mode="json")), _flat(stored.model_dump(mode="json"))
    return [
        f"{key}={new.get(key)!r} (the run's: {old.get(key)!r})"
        for key in sorted(set(new) | set(old))
        if key not in SAFE_ON_RESUME and new.get(key) != old.get(key)
    ]


def check_resume_settings(cfg: Config, stored: Config, checkpoint: Path) -> None:
    """Refuse to resume from `checkpoint` (whose config is `stored`) with settings the run did not use."""
    changed = changed_settings(cfg, stored)
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise OccreidError(
            f"--resume {checkpoint}: {'; '.join(changed[:3])}{more} differ from the run's settings, which a "
            f"resume keeps; resume with the run's config ({checkpoint.parent / 'config.yaml'}), or start a "
            f"new run; only {', '.join(SAFE_ON_RESUME)} may change on resume"
        )
