"""SynthOcc's ground-truth keypoints: validate (and copy) the `keypoints.npz` the generator wrote.

`occreid synth` writes `<root>/keypoints.npz` itself (estimator "synthetic", confidence = visibility in
{0, 1}); this importer lets `occreid pose extract --estimator synthetic` work like every other estimator: it
checks the file covers every image of the dataset and holds sane values, and copies it when another `--out`
is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occreid.errors import OccreidError
from occreid.pose.store import KeypointStore


def import_synthetic(source: str | Path, relpaths: list[str]) -> KeypointStore:
    """Load and validate SynthOcc keypoints for exactly `relpaths`; raises OccreidError naming the problem."""
    source = Path(source)
    if not source.is_file():
        raise OccreidError(
            f"synthetic keypoints not found: {source}; SynthOcc writes them when it renders the dataset "
            "(`occreid synth ...`); for other datasets pick a real estimator (mediapipe, rtmlib, coco-json)"
        )
    store = KeypointStore.load(source)
    if store.estimator != "synthetic":
        raise OccreidError(
            f"{source} holds keypoints from estimator '{store.estimator}', not SynthOcc's ground truth; "
            "use that estimator's name, or re-render the dataset with `occreid synth`"
        )
    store.check_coverage(relpaths, source=str(source))
    for relpath in relpaths:
        kpts = store[relpath]
        if not np.isfinite(kpts).all() or not np.isin(kpts[:, 2], (0.0, 1.0)).all():
            raise OccreidError(
                f"{source}: keypoints of {relpath} are not finite or have visibility outside {{0, 1}}"
            )
    extra = len(store) - len(set(relpaths))
    if extra > 0:
        store.settings = {**store.settings, "images_not_in_dataset": extra}
    return store
