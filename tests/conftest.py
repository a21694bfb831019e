"""Shared test helpers."""

import json
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist the workers share the cores: one thread each (and in the commands they start), as
    two threads per process on 2 cores run several times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture
def assert_overfits(monkeypatch):
    """`assert_overfits(cfg, synth_root)`: train `cfg` on the first 8 training identities of the SynthOcc at
    `synth_root`; the training loss must halve and the deployed model's training-set Rank-1 reach 0.9."""

    def check(cfg, synth_root: Path) -> None:
        import occreid.data.datasets as datasets_module
        import occreid.engine.trainer as trainer_module
        from occreid.engine.trainer import train
        from occreid.evaluation.evaluate import extract_features
        from occreid.inference.models import load_deployed_model

        load = datasets_module.load_dataset
        dataset = load("synthocc", synth_root)
        keep = sorted({r.pid for r in dataset.train})[:8]

        def eight_identities(cfg):
            ds = load(cfg.data.dataset, cfg.data.root)
            ds.train = [r for r in ds.train if r.pid in keep]
            return ds

        monkeypatch.setattr(trainer_module, "load_train_set", eight_identities)
        result = train(cfg, progress=False)
        records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in records if r["kind"] == "train"]
        assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
        model, cfg = load_deployed_model(result.run_dir / "last.pt")
        train_records = [r for r in dataset.train if r.pid in keep]
        feats = torch.nn.functional.normalize(
            extract_features(model, train_records, cfg, torch.device("cpu")), dim=1
        )
        dist = torch.cdist(feats, feats)
        dist.fill_diagonal_(float("inf"))
        pids = torch.tensor([r.pid for r in train_records])
        assert (pids[dist.argmin(1)] == pids).float().mean().item() >= 0.9

    return check


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and a download function that fails at once, as without internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    attempts = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


@pytest.fixture
def batch_for():
    """`batch_for(method.batch_needs(), (H, W))`: a random training batch for that method."""
    return random_batch


def random_batch(needs, image_size: tuple[int, int], b: int = 8, num_ids: int = 4, seed: int = 0) -> dict:
    """A random training batch with what a method's `batch_needs()` asks for: keypoints, or the occluded view
    with its occluder mask (the bottom half) and type."""
    h, w = image_size
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, h, w, generator=g)
    batch = {
        "images": images,
        "pids": torch.arange(num_ids).repeat_interleave(b // num_ids),
        "camids": torch.zeros(b, dtype=torch.long),
    }
    if needs.keypoints:
        kpts = torch.rand(b, 17, 3, generator=g) * torch.tensor([w, h, 1.0])
        kpts[:, :, 2] = 0.9
        batch["keypoints"] = kpts
    if needs.paired_views:
        mask = torch.zeros(b, 1, h, w)
        mask[:, :, h // 2 :] = 1.0
        batch.update(occluded=images * (1 - mask), occ_mask=mask, occ_type=torch.ones(b, dtype=torch.long))
    return batch
