"""Typed occlusion augmentation (docs/ogfr.md section 1): paired views, patch masks, type labels, held-out
types and sources, determinism in DataLoader workers."""

import numpy as np
import pytest
import torch
from PIL import Image

from occreid.config import Config, OcclusionConfig
from occreid.data.loaders import build_train_loader
from occreid.data.occlusion import OcclusionAugment, patch_mask, sources_for
from occreid.data.records import ImageRecord
from occreid.errors import OccreidError

H, W = 64, 32
ALL_SOURCES = OcclusionConfig().sources


def _make_images(root, num_ids: int = 4, per_id: int = 3) -> list[ImageRecord]:
    """Images whose every pixel differs from its mirror and its shifted neighbours (a 2-D gradient plus an
    identity colour), so a flip or a crop offset that differs between the views would show."""
    root.mkdir(parents=True, exist_ok=True)
    rows, cols = np.mgrid[0:32, 0:16]
    records = []
    for pid in range(num_ids):
        for j in range(per_id):
            rgb = np.stack([rows * 7 + j, cols * 15, np.full_like(rows, 60 * pid + 20)], -1).astype(np.uint8)
            path = root / f"{pid + 1:04d}_c{j % 2 + 1}s1_{j + 1:06d}_00.png"
            Image.fromarray(rgb).save(path)
            records.append(ImageRecord(str(path), pid, j % 2))
    return records


def _cfg(**occlusion) -> Config:
    cfg = Config()
    cfg.data.image_size = (H, W)
    cfg.data.p, cfg.data.k = 2, 3
    cfg.data.num_workers = 0
    cfg.data.pad = 4
    cfg.data.erasing_prob = 0.5
    for key, value in occlusion.items():
        setattr(cfg.occlusion, key, value)
    return cfg


def _other(rng_seed: int = 0):
    image = np.random.default_rng(rng_seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return lambda: image


def _augment(cfg: Config, held_out: bool = False) -> OcclusionAugment:
    return OcclusionAugment(
        cfg.occlusion, cfg.data.image_size, cfg.data.mean, cfg.data.std, held_out=held_out
    )


def _brute_patch_mask(mask: np.ndarray, patch: int, stride: int, threshold: float) -> np.ndarray:
    """(H, W) {0,1} -> row-major list of 'covered >= threshold' over the conv patch grid, by explicit
    loops."""
    out = []
    for top in range(0, mask.shape[0] - patch + 1, stride):
        for left in range(0, mask.shape[1] - patch + 1, stride):
            out.append(mask[top : top + patch, left : left + patch].sum() >= threshold * patch * patch)
    return np.array(out)


def test_both_views_come_from_one_augmented_image(tmp_path):
    records = _make_images(tmp_path)
    cfg = _cfg()
    torch.manual_seed(0)
    loader = build_train_loader(cfg, records, paired_views=True)
    seen_partial = 0
    for _ in range(4):
        loader.batch_sampler.set_epoch(_)
        for batch in loader:
            x, xo, m, t = batch["images"], batch["occluded"], batch["occ_mask"], batch["occ_type"]
            assert x.shape == xo.shape == (6, 3, H, W) and xo.dtype == torch.float32
            assert m.shape == (6, 1, H, W) and m.dtype == torch.float32 and t.dtype == torch.int64
            assert set(m.unique().tolist()) <= {0.0, 1.0}
            outside = (m == 0).expand_as(x)
            assert torch.equal(xo[outside], x[outside])  # same flip, crop and erasing outside the occluder
            inside = (m == 1).expand_as(x)
            assert (xo[inside] != x[inside]).float().mean() > 0.9  # the occluder replaced those pixels
            seen_partial += int(((m.flatten(1).mean(1) > 0) & (m.flatten(1).mean(1) < 1)).sum())
    assert seen_partial > 10


def test_geometry_is_shared_with_the_keypoints(tmp_path):
    records = _make_images(tmp_path)
    kpts = []
    for _ in records:
        k = np.zeros((17, 3), np.float32)
        k[:, 0], k[:, 1], k[:, 2] = np.linspace(1, 15, 17), np.linspace(1, 31, 17), 1.0
        kpts.append(k)
    cfg = _cfg()
    paired = build_train_loader(cfg, records, kpts, paired_views=True).dataset
    single = build_train_loader(cfg, records, kpts).dataset
    for i in range(len(records)):
        torch.manual_seed(i)
        a = paired[i]
        torch.manual_seed(i)
        b = single[i]
        # The holistic view and its keypoints are the plain loader's: the occluder is drawn after them, so
        # the occluded view shares their flip and crop (test above) and the keypoints belong to both.
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["keypoints"], b["keypoints"])


@pytest.mark.parametrize("stride", [16, 12])
def test_patch_mask_matches_the_pasted_region(stride):
    size, patch = (128, 64), 16
    grid = (1 + (size[0] - patch) // stride, 1 + (size[1] - patch) // stride)
    masks = torch.zeros(4, 1, *size)
    masks[0, 0, :40] = 1  # top band: 40 rows
    masks[1, 0, :, 40:] = 1  # right band: 24 columns
    masks[2, 0, 17:61, 5:29] = 1  # a block
    rng = np.random.default_rng(0)
    masks[3, 0] = torch.from_numpy(rng.random(size) < 0.5).float()  # irregular, near the threshold
    for threshold in (0.5, 0.3, 1.0):
        got = patch_mask(masks, patch, stride, threshold)
        assert got.shape == (4, grid[0] * grid[1]) and got.dtype == torch.bool
        for b in range(4):
            np.testing.assert_array_equal(
                got[b].numpy(), _brute_patch_mask(masks[b, 0].numpy(), patch, stride, threshold)
            )
    # Counted by hand: rows 0..39 cover whole patch rows 0-1 and 8/16 of patch row 2 (stride 16: rows 32-47).
    top = patch_mask(masks[:1], patch, stride, 0.5).view(*grid)
    if stride == 16:
        assert top[:, 0].tolist() == [True, True, True] + [False] * 5
    else:  # patch rows start at 0, 12, 24, 36: 16/16, 16/16, 16/16, 4/16 covered
        assert top[:, 0].tolist() == [True, True, True, False] + [False] * (grid[0] - 4)


def test_patch_mask_of_a_drawn_occluder_covers_exactly_its_box():
    cfg = _cfg(types=("top", "bottom", "left", "right", "block"), sources=("image", "shape"))
    aug = _augment(cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, H, W)
    for _ in range(40):
        draw = aug.sample(_other(), gen)
        _, mask = aug.paste(x, draw)
        top, left, h, w = draw.box
        box = np.zeros((H, W), bool)
        box[top : top + h, left : left + w] = True
        np.testing.assert_array_equal(mask[0].numpy().astype(bool), box)  # full-box sources cover the box
        for stride in (16, 12):
            got = patch_mask(mask[None], 16, stride, 0.5)[0].numpy()
            np.testing.assert_array_equal(got, _brute_patch_mask(box, 16, stride, 0.5))


def test_type_labels_match_what_was_pasted():
    cfg = _cfg(sources=ALL_SOURCES)
    aug = _augment(cfg)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, H, W, generator=torch.Generator().manual_seed(2))
    lo, hi = cfg.occlusion.side_range
    seen = set()
    for _ in range(250):
        draw = aug.sample(_other(), gen)
        occluded, mask = aug.paste(x, draw)
        m = mask[0].numpy() > 0
        rows, cols = np.nonzero(m)
        assert cfg.occlusion.types[draw.type_index] == draw.type
        seen.add((draw.type, draw.source))
        if draw.type == "none":
            assert not m.any() and torch.equal(occluded, x)
            continue
        assert m.any(), draw
        if draw.type == "top":
            assert rows.min() == 0 and rows.max() < round(hi * H)
        elif draw.type == "bottom":
            assert rows.max() == H - 1 and rows.min() >= H - round(hi * H)
        elif draw.type == "left":
            assert cols.min() == 0 and cols.max() < round(hi * W)
        elif draw.type == "right":
            assert cols.max() == W - 1 and cols.min() >= W - round(hi * W)
        elif draw.type == "person":
            assert draw.source in ("image", "synthocc_person")
            assert cols.min() == 0 or cols.max() == W - 1
            assert cols.max() - cols.min() + 1 <= round(hi * W)
        if draw.type in ("top", "bottom") and draw.source in ("image", "background", "shape"):
            assert round(lo * H) <= draw.box[2] <= round(hi * H) and m.all(axis=1).sum() == draw.box[2]
        if draw.type == "block":
            area = draw.box[2] * draw.box[3] / (H * W)
            assert cfg.occlusion.block_area[0] - 0.05 <= area <= cfg.occlusion.block_area[1] + 0.05
    assert {t for t, _ in seen} == set(cfg.occlusion.types)
    assert {s for _, s in seen} == set(ALL_SOURCES) | {None}


def test_synthocc_renderers_attach_only_to_their_sides():
    assert "synthocc_vehicle" not in sources_for("top", ALL_SOURCES)
    assert "synthocc_vehicle" in sources_for("bottom", ALL_SOURCES)
    assert sources_for("person", ALL_SOURCES) == ["image", "synthocc_person"]
    assert sources_for("none", ALL_SOURCES) == []


def test_held_out_types_and_sources_never_appear_in_training():
    cfg = _cfg(
        held_out_types=("top", "person"), held_out_sources=("image", "synthocc_pole", "synthocc_person")
    )
    train, test = _augment(cfg), _augment(cfg, held_out=True)
    gen = torch.Generator().manual_seed(0)
    train_draws = [train.sample(_other(), gen) for _ in range(300)]
    assert not {d.type for d in train_draws} & {"top", "person"}
    assert not {d.source for d in train_draws} & {"image", "synthocc_pole", "synthocc_person"}
    assert {d.type for d in train_draws} == {"none", "bottom", "left", "right", "block"}
    # Held-out views draw only what training never draws: a held-out type or a held-out source.
    test_draws = [test.sample(_other(), gen) for _ in range(300)]
    assert all(
        d.type in ("top", "person") or d.source in ("image", "synthocc_pole", "synthocc_person")
        for d in test_draws
    )
    assert {d.type for d in test_draws} == {"top", "person", "bottom", "left", "right", "block"}
    assert {d.source for d in test_draws if d.type == "bottom"} == {"image", "synthocc_person"}
    assert len({d.source for d in test_draws if d.type == "top"}) > 2
    # A type whose only sources are held out cannot be trained: one clear error.
    with pytest.raises(OccreidError, match="'person' has no source"):
        _augment(_cfg(held_out_sources=("image", "synthocc_person")))
    with pytest.raises(OccreidError, match="occlusion.held_out_types"):
        _augment(_cfg(types=("none", "top"), held_out_types=("left",)))
    with pytest.raises(OccreidError, match="occlusion.type_probs"):
        _augment(_cfg(type_probs=(1.0, 2.0)))


def test_type_probabilities():
    cfg = _cfg(types=("none", "top", "bottom"), type_probs=(0.0, 3.0, 1.0), sources=("shape",))
    aug = _augment(cfg)
    gen = torch.Generator().manual_seed(0)
    names = [aug.sample(_other(), gen).type for _ in range(400)]
    assert "none" not in names
    assert 0.68 < names.count("top") / 400 < 0.82  # 3:1, +- 3.5 sd


def _epoch_batches(cfg, records, loader_seed: int) -> list[dict]:
    loader = build_train_loader(cfg, records, paired_views=True, seed=0)
    loader.generator.manual_seed(loader_seed)  # as the trainer does each epoch
    loader.batch_sampler.set_epoch(0)
    return list(loader)


def test_deterministic_per_seed_in_two_dataloader_workers(tmp_path):
    records = _make_images(tmp_path)
    cfg = _cfg()
    cfg.data.num_workers = 2
    a, b, c = (_epoch_batches(cfg, records, s) for s in (7, 7, 8))
    assert len(a) == len(b) == len(c) > 1
    for key in ("images", "occluded", "occ_type", "occ_mask"):
        assert all(torch.equal(x[key], y[key]) for x, y in zip(a, b)), key
    assert not all(torch.equal(x["occluded"], y["occluded"]) for x, y in zip(a, c))


def test_preview_shows_both_views_and_the_mask(tmp_path):
    from occreid.data.occlusion.preview import make_augment_preview

    records = _make_images(tmp_path / "images")
    scale = 2
    for types, expect_occluder in ((("none",), False), (("top",), True)):
        cfg = _cfg(types=types, sources=("shape",))
        cfg.data.erasing_prob = 0.0
        out = make_augment_preview(cfg, records, tmp_path / "p.png", num=3, per_row=3, scale=scale)
        sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
        tw, th = W * scale, H * scale
        assert sheet.shape == (th + 16 + 4, 3 * (3 * tw + 12) + 4, 3)
        x, xo, mask = (sheet[4 : 4 + th, 4 + c * (tw + 4) : 4 + c * (tw + 4) + tw] for c in range(3))
        if not expect_occluder:
            assert np.array_equal(x, xo) and mask.max() == 0
        else:
            band = (mask[:, tw // 2 + 5] == 255).all(
                -1
            )  # white: the mask (red: outlines of patches with m = 1)
            rows = np.nonzero(band)[0]
            assert rows.min() <= 1 and round(0.25 * th) - scale <= rows.max() < round(0.5 * th) + scale
            assert np.array_equal(x[rows.max() + 1 :], xo[rows.max() + 1 :])  # x~ = x below the occluder
            assert (mask[:, :, 1] == 0).any() and ((mask[:, :, 0] == 255) & (mask[:, :, 1] == 0)).any()


def test_augment_preview_cli_refuses_to_overwrite(tmp_path):
    from tests.test_cli import assert_user_error, run

    out = tmp_path / "mine.png"
    out.write_bytes(b"not yours")
    assert_user_error(
        run("data", "augment-preview", "--out", str(out), cwd=tmp_path), str(out), "--overwrite"
    )
    assert out.read_bytes() == b"not yours"


@pytest.mark.parametrize("views", ["both", "student_only"])
def test_random_erasing_of_the_holistic_view_is_a_setting(tmp_path, views):
    """occlusion.erasing_views: with "both" the holistic view is erased like the occluded one; with
    "student_only" it is the unerased image and only x~ carries the erasing box (no occluder here: type none,
    so x~ is x plus only the erasing)."""
    records = _make_images(tmp_path)
    cfg = _cfg(types=("none",), erasing_views=views)
    cfg.data.erasing_prob = 1.0
    erased = []
    for i in range(len(records)):
        torch.manual_seed(i)
        item = build_train_loader(cfg, records, paired_views=True).dataset[i]
        x, xo = item["images"], item["occluded"]
        erased.append(
            bool((xo == 0).all(dim=0).any())
        )  # the erasing box: the mean colour, 0 after normalising
        assert torch.equal(x, xo) == (views == "both")
        assert not (x == 0).all(dim=0).any() if views == "student_only" else True
    assert sum(erased) >= len(records) - 1  # p = 1: (nearly) every x~ has its box (10 tries may all miss)


def test_the_unseen_split_holds_out_every_source_of_a_held_out_type():
    from occreid.data.occlusion.paste import held_out_for_unseen

    types, sources = held_out_for_unseen(["person", "clutter"])
    assert types == ("person",) and sources == ("synthocc_clutter", "synthocc_person")
    assert held_out_for_unseen(["pole"]) == ((), ("synthocc_pole",))
    cfg = _cfg(held_out_types=types, held_out_sources=sources)
    augment = _augment(cfg)
    assert "person" not in augment.types  # not even from the "image" source (another identity's centre)
    assert not any(
        s in ("synthocc_person", "synthocc_clutter") for t in augment.types for s in augment.sources[t]
    )
