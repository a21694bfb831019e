from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from occreid.config import Config
from occreid.data.loaders import ImageDataset, build_test_loader, build_train_loader
from occreid.data.records import ImageRecord
from occreid.data.transforms import build_transforms
from occreid.errors import OccreidError


def _make_images(root, num_ids: int = 4, per_id: int = 3) -> list[ImageRecord]:
    """Market-style files `0001_c1s1_000001_00.jpg`, 32x16 (H x W), colour encodes the identity."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for pid in range(num_ids):
        for j in range(per_id):
            cam = j % 2 + 1
            path = root / f"{pid + 1:04d}_c{cam}s1_{j + 1:06d}_00.jpg"
            Image.new("RGB", (16, 32), (40 * pid + 20, 10 * j, 200)).save(path, quality=95)
            records.append(ImageRecord(str(path), pid, cam - 1))
    return records


def _keypoints(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        k = np.zeros((17, 3), np.float32)
        k[:, 0] = rng.uniform(2, 14, 17)
        k[:, 1] = rng.uniform(2, 30, 17)
        k[:, 2] = 1.0
        out.append(k)
    return out


def _cfg(**data) -> Config:
    cfg = Config()
    cfg.data.image_size = (64, 32)
    cfg.data.p, cfg.data.k = 2, 3
    cfg.data.num_workers = 0
    cfg.data.pad = 4
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def test_dataset_item(tmp_path):
    records = _make_images(tmp_path)
    kpts = _keypoints(len(records))
    ds = ImageDataset(records, build_transforms(_cfg().data, train=False), kpts)
    item = ds[4]
    assert item["images"].shape == (3, 64, 32) and item["images"].dtype == torch.float32
    assert (item["pids"], item["camids"], item["paths"], item["index"]) == (
        1,
        records[4].camid,
        records[4].path,
        4,
    )
    assert item["keypoints"].dtype == torch.float32 and item["keypoints"].shape == (17, 3)
    np.testing.assert_allclose(
        item["keypoints"][:, :2].numpy(), kpts[4][:, :2] * 2, rtol=1e-6
    )  # 32x16 -> 64x32
    # The red channel of pid 1 is 60/255, normalised with the ImageNet mean/std.
    assert item["images"][0].mean().item() == pytest.approx((60 / 255 - 0.485) / 0.229, abs=0.02)
    no_kpts = ImageDataset(records, build_transforms(_cfg().data, train=False))
    assert "keypoints" not in no_kpts[0]
    with pytest.raises(ValueError, match="11 keypoint arrays for 12 records"):
        ImageDataset(records, build_transforms(_cfg().data, train=False), kpts[:-1])


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    Image.new("L", (16, 32), 128).save(tmp_path / "0001_c1s1_000001_00.png")
    Image.new("RGBA", (16, 32), (255, 0, 0, 10)).save(tmp_path / "0002_c1s1_000001_00.png")
    records = [
        ImageRecord(str(tmp_path / "0001_c1s1_000001_00.png"), 0, 0),
        ImageRecord(str(tmp_path / "0002_c1s1_000001_00.png"), 1, 0),
    ]
    cfg = _cfg(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ds = ImageDataset(records, build_transforms(cfg.data, train=False))
    gray, red = ds[0]["images"], ds[1]["images"]
    assert gray.shape == red.shape == (3, 64, 32)
    np.testing.assert_allclose(gray[:, 10, 10].numpy(), [128 / 255] * 3, atol=1e-5)
    np.testing.assert_allclose(red[:, 10, 10].numpy(), [1.0, 0.0, 0.0], atol=1e-5)


def test_train_loader_batches(tmp_path):
    records = _make_images(tmp_path)
    cfg = _cfg()
    cfg.train.steps_per_epoch = 3
    loader = build_train_loader(cfg, records, _keypoints(len(records)), seed=1)
    assert len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        assert batch["images"].shape == (6, 3, 64, 32) and batch["images"].dtype == torch.float32
        assert batch["pids"].dtype == torch.int64 and batch["camids"].dtype == torch.int64
        assert batch["index"].shape == (6,) and batch["index"].dtype == torch.int64
        assert batch["keypoints"].shape == (6, 17, 3) and batch["keypoints"].dtype == torch.float32
        assert isinstance(batch["paths"], list) and len(batch["paths"]) == 6
        pids = batch["pids"].tolist()
        assert sorted({pid: pids.count(pid) for pid in pids}.values()) == [3, 3]
        for i, index in enumerate(batch["index"].tolist()):
            assert batch["paths"][i] == records[index].path and pids[i] == records[index].pid
    without = next(iter(build_train_loader(cfg, records)))
    assert "keypoints" not in without


def test_train_loader_is_reproducible_with_workers(tmp_path):
    records = _make_images(tmp_path)
    cfg = _cfg(num_workers=1)
    cfg.train.steps_per_epoch = 2

    def run(seed: int, rank: int = 0) -> list[torch.Tensor]:
        loader = build_train_loader(cfg, records, seed=seed, rank=rank, world_size=2)
        loader.batch_sampler.set_epoch(0)
        return [b["images"] for b in loader]

    a, b, c = run(3), run(3), run(3, rank=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))


def test_test_loader_is_sequential_without_augmentation(tmp_path):
    records = _make_images(tmp_path)
    cfg = _cfg(flip_prob=1.0, erasing_prob=1.0)  # train-only settings must not apply
    loader = build_test_loader(cfg, records, _keypoints(len(records)), batch_size=5)
    batches = list(loader)
    assert [len(b["paths"]) for b in batches] == [5, 5, 2]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(12))
    assert [p for b in batches for p in b["paths"]] == [r.path for r in records]
    assert batches[0]["keypoints"].shape == (5, 17, 3)
    reference = ImageDataset(records, build_transforms(cfg.data, train=False))
    assert torch.equal(batches[1]["images"][0], reference[5]["images"])
    cfg.eval.batch_size = 7
    assert [len(b["paths"]) for b in build_test_loader(cfg, records)] == [7, 5]


def _corrupt(tmp_path) -> list[ImageRecord]:
    records = _make_images(tmp_path, num_ids=2, per_id=2)
    bad = records[2].path
    data = Path(bad).read_bytes()
    Path(bad).write_bytes(data[: len(data) // 3])  # truncated JPEG
    return records


def test_corrupt_image_error_names_the_file(tmp_path):
    records = _corrupt(tmp_path)
    loader = build_test_loader(_cfg(), records, batch_size=2)
    with pytest.raises(OccreidError, match=r"cannot read image .*0002_c1s1_000001_00\.jpg"):
        list(loader)
    missing = [ImageRecord(str(tmp_path / "0009_c1s1_000001_00.jpg"), 0, 0)]
    with pytest.raises(OccreidError, match=r"image not found: .*0009_c1s1_000001_00\.jpg"):
        list(build_test_loader(_cfg(), missing))
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(OccreidError, match=r"cannot read image .*notes\.jpg"):
        list(build_test_loader(_cfg(), [ImageRecord(str(tmp_path / "notes.jpg"), 0, 0)]))


def test_corrupt_image_error_from_a_worker_is_one_line(tmp_path):
    records = _corrupt(tmp_path)
    loader = build_test_loader(_cfg(num_workers=1), records, batch_size=2)
    with pytest.raises(OccreidError) as info:
        list(loader)
    message = str(info.value)
    assert message.startswith("cannot read image ") and "0002_c1s1_000001_00.jpg" in message
    assert "Traceback" not in message and "\n" not in message


def test_empty_splits():
    with pytest.raises(OccreidError, match="training split has no images"):
        build_train_loader(_cfg(), [])
    assert list(build_test_loader(_cfg(), [])) == []  # e.g. a rank's empty share of a tiny query set
