"""The benchmark datasets as `ReidDataset`s: `load_dataset(name, root)`.

    from occreid.data.datasets import load_dataset
    ds = load_dataset("market1501", "data/Market-1501-v15.09.15")
    print(ds.summary())

Records hold absolute paths; every list is sorted by path; train pids are relabelled to 0..N-1 while query
and gallery keep the dataset's ids. Folder layouts, the single-camera protocol of the test-only sets, the
Partial-Duke recipe and the statistics convention are in docs/datasets.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from occreid.data.datasets.duke import load_dukemtmc, load_occluded_duke, load_p_dukemtmc, load_partial_duke
from occreid.data.datasets.folder import load_folder
from occreid.data.datasets.market import load_market1501, load_synthocc
from occreid.data.datasets.single_camera import load_occluded_reid, load_partial_ilids, load_partial_reid
from occreid.data.records import ReidDataset
from occreid.errors import OccreidError


@dataclass(frozen=True)
class Dataset:
    """A dataset of the registry: its loader and a one-line description for `occreid data list`."""

    loader: Callable[..., ReidDataset]
    description: str


# The registry of datasets: adding one is its loader module and one line here (docs/extending.md).
DATASETS: dict[str, Dataset] = {
    "market1501": Dataset(load_market1501, "Market-1501: 6 cameras, 751 train / 750 test ids; holistic"),
    "dukemtmc": Dataset(
        load_dukemtmc, "DukeMTMC-reID: 8 cameras, 702 train ids, 17,661 gallery images; holistic"
    ),
    "occluded_duke": Dataset(
        load_occluded_duke, "Occluded-Duke: DukeMTMC-reID re-split so every query is occluded"
    ),
    "occluded_reid": Dataset(
        load_occluded_reid, "Occluded-REID: 200 people, occluded query vs whole-body gallery; test only"
    ),
    "partial_reid": Dataset(
        load_partial_reid, "Partial-REID: 60 people, cropped partial query vs whole-body gallery; test only"
    ),
    "partial_ilids": Dataset(
        load_partial_ilids,
        "Partial-iLIDS: 119 people, one partial probe and one gallery image each; test only",
    ),
    "p_dukemtmc": Dataset(
        load_p_dukemtmc, "P-DukeMTMC-reID: DukeMTMC-reID people with occluded and whole-body images"
    ),
    "partial_duke": Dataset(
        load_partial_duke,
        "Partial-Duke: DukeMTMC-reID with half the images cropped (occreid data make-partial-duke)",
    ),
    "synthocc": Dataset(
        load_synthocc, "SynthOcc: occreid's synthetic occluded set in Market-1501 layout (occreid synth)"
    ),
    "folder": Dataset(
        load_folder, "Your own data: a Market-style folder or a CSV of path,pid,camid[,split[,occluded]]"
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def load_dataset(name: str, root: str | Path | None, *, check_stats: bool = True, **kwargs) -> ReidDataset:
    """Load the dataset `name` (one of `DATASET_NAMES`) from `root` (None only for "folder" with `csv=`).

    check_stats: compare ids/images per split with the published numbers and `warnings.warn` on a mismatch
        (expected on subsets). kwargs go to the loader: `csv=` for "folder", `camids=` for "p_dukemtmc".
    """
    entry = DATASETS.get(name)
    if entry is None:
        raise OccreidError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    loader = entry.loader
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("root", "check_stats")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = ", ".join(accepted) or "none"
        raise OccreidError(f"dataset {name}: unknown option(s) {', '.join(unknown)}; it takes: {options}")
    if root is None and name != "folder":
        raise OccreidError(
            f"dataset {name}: no root given; pass the dataset folder (or the folder that contains it)"
        )
    return loader(root, check_stats=check_stats, **kwargs)


__all__ = ["DATASET_DESCRIPTIONS", "DATASET_NAMES", "load_dataset"]
