"""SynthOcc: determinism, Market layout and naming, camera coverage, protocols, exact keypoints and
occlusion."""

import json
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occreid.data.datasets import load_dataset
from occreid.data.synthocc import PRESETS, generate, plan_dataset, render_sample
from occreid.data.synthocc.generate import HEIGHT, PARTIAL_ROWS, WIDTH
from occreid.data.synthocc.identity import attribute_difference, sample_identities
from occreid.data.synthocc.occluders import (
    COVER_RANGE,
    OCCLUDER_TYPES,
    clamp_to_band,
    half_plane,
    make_occluder,
    person_mask,
    place_occluder,
)
from occreid.data.synthocc.render import Placement, person_primitives, sample_pose
from occreid.errors import OccreidError
from occreid.pose.store import KeypointStore

SEED = 3
MARKET = re.compile(r"([-\d]+)_c(\d)")
NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
GREEN = np.array([0, 255, 0])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthocc")
    info = generate(root, preset="small", seed=SEED, protocol="occluded", workers=2, progress=False)
    return root, info


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for d in SPLIT_DIRS
        for p in sorted((root / d).iterdir())
    }


def test_same_seed_gives_byte_identical_images_for_any_worker_count(dataset, tmp_path):
    root, _ = dataset
    again = tmp_path / "again"
    generate(again, preset="small", seed=SEED, protocol="occluded", workers=1, progress=False)
    a, b = _files(root), _files(again)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    ka, kb = KeypointStore.load(root / "keypoints.npz"), KeypointStore.load(again / "keypoints.npz")
    assert all(np.array_equal(ka[k], kb[k]) for k in a)
    assert json.loads((root / "annotations.json").read_text()) == json.loads(
        (again / "annotations.json").read_text()
    )
    # ...and another seed gives other images (so the comparison above can fail).
    identities, specs = plan_dataset(PRESETS["small"], SEED, "occluded")
    other_ids, _ = plan_dataset(PRESETS["small"], SEED + 1, "occluded")
    s = specs[0]
    assert (
        np.abs(
            np.asarray(render_sample(s, identities, SEED, PRESETS["small"]).image, np.int16)
            - np.asarray(render_sample(s, other_ids, SEED + 1, PRESETS["small"]).image, np.int16)
        ).mean()
        > 5
    )


def test_market_layout_names_counts_and_cameras(dataset):
    root, info = dataset
    p = PRESETS["small"]
    pids: dict[str, set[int]] = {}
    cams_of: dict[int, set[int]] = defaultdict(set)
    for d in SPLIT_DIRS:
        names = sorted(f.name for f in (root / d).iterdir())
        assert all(NAME.match(n) for n in names), names[:3]
        parsed = [tuple(map(int, MARKET.search(n).groups())) for n in names]
        pids[d] = {pid for pid, _ in parsed}
        for pid, cam in parsed:
            assert 1 <= cam <= p.num_cameras
            cams_of[pid].add(cam)
        with Image.open(root / d / names[0]) as im:
            assert (im.format, im.size, im.mode) == ("JPEG", (WIDTH, HEIGHT), "RGB")
    assert len(list((root / "bounding_box_train").iterdir())) == p.train_ids * p.train_images == 240
    assert len(list((root / "query").iterdir())) == p.test_ids * p.queries == 60
    assert (
        len(list((root / "bounding_box_test").iterdir()))
        == p.test_ids * p.gallery + p.gallery_only_ids * p.gallery_only_images
    )
    assert pids["bounding_box_train"] == set(range(1, p.train_ids + 1))  # pids start at 1
    assert pids["query"] <= pids["bounding_box_test"]
    assert not pids["bounding_box_train"] & pids["bounding_box_test"]  # train and test identities disjoint
    assert all(len(c) >= 2 for c in cams_of.values())  # every identity in >= 2 cameras
    assert info["counts"]["train"]["images"] == 240 and info["settings"]["train_ids"] == p.train_ids


def test_queries_have_cross_camera_matches_and_gallery_mostly_from_other_cameras(dataset):
    root, _ = dataset
    gallery = defaultdict(list)
    for f in (root / "bounding_box_test").iterdir():
        pid, cam = map(int, MARKET.search(f.name).groups())
        gallery[pid].append(cam)
    same = total = 0
    for f in (root / "query").iterdir():
        pid, cam = map(int, MARKET.search(f.name).groups())
        assert sum(c != cam for c in gallery[pid]) >= 2
        same += sum(c == cam for c in gallery[pid])
        total += len(gallery[pid])
    assert same / total < 0.35


def test_occluded_protocol_fractions_and_labels(dataset):
    root, info = dataset
    ann = json.loads((root / "annotations.json").read_text())
    split = lambda d: {k: v for k, v in ann.items() if k.startswith(d + "/")}
    query, gallery, train = split("query"), split("bounding_box_test"), split("bounding_box_train")
    assert all(
        v["occluded"] and v["occluder_type"] in OCCLUDER_TYPES and v["occluder_boxes"] for v in query.values()
    )
    assert sum(v["occluded"] for v in gallery.values()) == round(0.1 * len(gallery))
    assert sum(v["occluded"] for v in train.values()) == round(0.2 * len(train))
    assert all(v["partial"] is None for v in ann.values())
    # Every occluder hides 20-60% of the person. No tolerance: the fraction is counted on the same canvas
    # pixels the generator holds to the band (rounding to 3 decimals cannot leave [0.2, 0.6]).
    fractions = np.array([v["occluded_fraction"] for v in ann.values() if v["occluded"]])
    assert len(fractions) == len(query) + round(0.1 * len(gallery)) + round(0.2 * len(train))
    assert fractions.min() >= COVER_RANGE[0] and fractions.max() <= COVER_RANGE[1], (
        fractions.min(),
        fractions.max(),
    )
    assert (
        0.3 < np.median(fractions) < 0.5 and fractions.min() < 0.25 and fractions.max() > 0.55
    )  # spread out
    assert {v["view"] for v in ann.values()} == {"front", "back", "side"}
    assert info["counts"]["query"]["occluded"] == len(query)
    # Several occluder types actually occur in a few hundred images.
    assert len({v["occluder_type"] for v in ann.values() if v["occluded"]}) == len(OCCLUDER_TYPES)


def test_keypoint_store_covers_every_image_and_hidden_keypoints_lie_in_occluder_boxes(dataset):
    root, _ = dataset
    store = KeypointStore.load(root / "keypoints.npz")
    ann = json.loads((root / "annotations.json").read_text())
    files = list(_files(root))
    assert store.estimator == "synthetic" and store.settings["seed"] == SEED
    assert store.check_coverage(files, source="keypoints.npz") == 0 and len(store) == len(files) == len(ann)
    hidden_in_frame = 0
    for rel in files:
        kp = store[rel]
        assert set(np.unique(kp[:, 2])) <= {0.0, 1.0}
        inside = (kp[:, 0] >= 0) & (kp[:, 0] < WIDTH) & (kp[:, 1] >= 0) & (kp[:, 1] < HEIGHT)
        if not ann[rel]["occluded"]:
            assert np.array_equal(kp[:, 2] > 0, inside)  # holistic: visible iff in the frame
        for x, y in kp[(kp[:, 2] == 0) & inside, :2]:
            hidden_in_frame += 1
            assert any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in ann[rel]["occluder_boxes"]), (
                rel,
                x,
                y,
            )
    assert hidden_in_frame > 100  # occluders really hide keypoints
    # The person's box (its silhouette before the occluder) holds every keypoint in the frame, hidden or not.
    for rel in files:
        x0, y0, x1, y1 = ann[rel]["person_box"]
        kp = store[rel]
        inside = (kp[:, 0] >= 0) & (kp[:, 0] < WIDTH) & (kp[:, 1] >= 0) & (kp[:, 1] < HEIGHT)
        assert ((kp[inside, 0] >= x0 - 1) & (kp[inside, 0] <= x1 + 1)).all(), rel
        assert ((kp[inside, 1] >= y0 - 1) & (kp[inside, 1] <= y1 + 1)).all(), rel
    occluded_vis = np.mean([store[k][:, 2].mean() for k in files if ann[k]["occluded"]])
    assert occluded_vis < 0.85


def _on_body(image: Image.Image, kp: np.ndarray) -> np.ndarray:
    """Whether the pixel under each keypoint differs from the pure-green background of a clean render."""
    arr = np.asarray(image).astype(int)
    x = np.clip(np.floor(kp[:, 0]).astype(int), 0, arr.shape[1] - 1)
    y = np.clip(np.floor(kp[:, 1]).astype(int), 0, arr.shape[0] - 1)
    return np.abs(arr[y, x] - GREEN).sum(axis=1) > 40


def test_visible_keypoints_lie_on_the_rendered_body():
    preset = PRESETS["small"]
    identities, specs = plan_dataset(preset, SEED, "occluded")
    checked = off_when_shifted = 0
    for spec in specs[::6]:  # ~80 images, all views, occluded and not
        clean = render_sample(spec, identities, SEED, preset, clean=True)
        kp = clean.keypoints
        vis = kp[:, 2] > 0
        assert _on_body(clean.image, kp)[vis].all(), spec.relpath
        checked += vis.sum()
        shifted = kp.copy()
        shifted[:, 0] += 12  # the same check on keypoints moved 12 px sideways mostly fails: it discriminates
        off_when_shifted += (~_on_body(clean.image, shifted))[vis].sum()
        # The keypoints of the normal render are those of the clean one; hidden ones are still on the body.
        full = render_sample(spec, identities, SEED, preset)
        assert np.allclose(full.keypoints[:, :2], kp[:, :2])
        assert _on_body(clean.image, full.keypoints)[kp[:, 2] > 0].all()
    assert checked > 1000 and off_when_shifted > 0.5 * checked


@pytest.mark.parametrize("crop", ["half", "third"])
def test_partial_crop_keypoint_transform(crop):
    preset = PRESETS["small"]
    identities, specs = plan_dataset(preset, SEED, "partial")
    queries = [s for s in specs if s.split == "query"]
    assert all(s.partial in ("half", "third") for s in queries) and not any(
        s.partial for s in specs if s.split != "query"
    )
    assert sum(s.partial == "half" for s in queries) == len(queries) // 2  # an exact split, like Partial-Duke
    rows = PARTIAL_ROWS[crop]
    for spec in queries[:10]:
        part = render_sample(replace(spec, partial=crop), identities, SEED, preset, clean=True)
        whole = render_sample(replace(spec, partial=None), identities, SEED, preset, clean=True)
        kp, kw = part.keypoints, whole.keypoints
        np.testing.assert_allclose(kp[:, 0], kw[:, 0], atol=1e-4)
        np.testing.assert_allclose(kp[:, 1], kw[:, 1] * HEIGHT / rows, rtol=1e-5)
        assert np.array_equal(kp[:, 2] > 0, (kw[:, 2] > 0) & (kw[:, 1] < rows))  # below the crop: not visible
        assert kp[:, 2].sum() < 17 and kp[0, 2] == 1  # the ankles are cut off, the nose is kept
        assert _on_body(part.image, kp)[kp[:, 2] > 0].all()
        assert (
            part.annotation["occluded"]
            and part.annotation["partial"] == crop
            and part.image.size == (WIDTH, HEIGHT)
        )


def test_protocols_share_the_training_set_and_the_person():
    preset = PRESETS["small"]
    ids_o, occ = plan_dataset(preset, SEED, "occluded")
    ids_h, hol = plan_dataset(preset, SEED, "holistic")
    assert [s for s in occ if s.split == "train"] == [s for s in hol if s.split == "train"]
    assert not any(s.occluded or s.partial for s in hol if s.split != "train")
    q = next(s for s in occ if s.split == "query")
    a = render_sample(q, ids_o, SEED, preset)
    b = render_sample(replace(q, occluded=False), ids_h, SEED, preset)
    assert np.array_equal(
        a.keypoints[:, :2], b.keypoints[:, :2]
    )  # same person and pose; only the occluder differs
    assert a.annotation["occluded"] and not b.annotation["occluded"] and b.keypoints[:, 2].all()


def test_identities_are_distinct_but_many_pairs_differ_in_one_or_two_part_local_attributes():
    ids = sample_identities(300, np.random.default_rng(0))
    assert len({i.key() for i in ids}) == 300
    close = [(a, b) for n, a in enumerate(ids) for b in ids[n + 1 :] if len(attribute_difference(a, b)) <= 2]
    near = {id(x) for pair in close for x in pair}
    assert len(near) / len(ids) > 0.6  # most identities have a near-twin
    local = {
        "shoes",
        "lower",
        "lower_type",
        "upper_pattern",
        "upper_second",
        "logo_shape",
        "bag",
        "bag_colour",
    }
    diffs = [d for a, b in close for d in attribute_difference(a, b)]
    assert sum(d in local for d in diffs) / len(diffs) > 0.5


def test_loader_reads_the_generated_dataset(dataset):
    root, _ = dataset
    ds = load_dataset("synthocc", root)
    # query cameras: the 1-2 "query cameras" per test identity that the generator's plan drew for this seed
    _, specs = plan_dataset(PRESETS["small"], SEED, "occluded")
    query_cams = len({s.camid for s in specs if s.split == "query"})
    assert 2 <= query_cams <= 6
    assert ds.split_stats() == {"train": (40, 240, 6), "query": (30, 60, query_cams), "gallery": (40, 180, 6)}
    assert all(r.occluded for r in ds.query) and sum(bool(r.occluded) for r in ds.gallery) == 18

    from typer.testing import CliRunner

    from occreid.cli import app

    result = CliRunner().invoke(app, ["data", "summary", "synthocc", "--root", str(root)])
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: (int(cells[1]), int(cells[2]))
        for cells in (
            [c.strip() for c in line.split("|")] for line in result.output.splitlines() if "|" in line
        )
        if cells[0] in ("train", "query", "gallery")
    }
    assert rows == {"train": (40, 240), "query": (30, 60), "gallery": (40, 180)}


def test_cli_generates_previews_and_refuses_to_overwrite(tmp_path):
    from typer.testing import CliRunner

    from occreid.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(out),
            "--preset",
            "small",
            "--protocol",
            "holistic",
            "--workers",
            "1",
            "--preview",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((out / "synthocc.json").read_text())
    assert (info["protocol"], info["preset"], info["counts"]["query"]["occluded"]) == ("holistic", "small", 0)
    with Image.open(out / "preview.png") as im:
        assert im.width > 8 * 64 and im.height > 6 * 128
    again = runner.invoke(app, ["synth", "--out", str(out), "--preset", "small"])
    assert isinstance(again.exception, OccreidError) and "--force" in str(again.exception)
    bad = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--protocol", "blurry"])
    assert isinstance(bad.exception, OccreidError) and "--protocol" in str(bad.exception)
    assert not (tmp_path / "x").exists()  # nothing written for a bad option
    missing = runner.invoke(app, ["synth", "preview", str(tmp_path / "nothing")])
    assert isinstance(missing.exception, OccreidError) and "annotations.json" in str(missing.exception)


def test_partial_queries_are_an_exact_half_third_split_for_any_seed():
    for seed in range(4):
        _, specs = plan_dataset(PRESETS["small"], seed, "partial")
        crops = [s.partial for s in specs if s.split == "query"]
        assert (crops.count("half"), crops.count("third")) == (30, 30), seed
    _, a = plan_dataset(PRESETS["small"], 0, "partial")
    _, b = plan_dataset(PRESETS["small"], 1, "partial")
    assert [s.partial for s in a if s.split == "query"] != [s.partial for s in b if s.split == "query"]


def _silhouette(seed: int) -> tuple[np.ndarray, float]:
    identity = sample_identities(1, np.random.default_rng(seed))[0]
    pose = sample_pose(np.random.default_rng(seed), "front")
    size = 200 / identity.height
    prims, _ = person_primitives(identity, pose, Placement(cx=64, feet_y=250, size=size))
    return person_mask(prims, (128, 256)), size * identity.height


@pytest.mark.parametrize("direction", ["bottom", "top", "left", "right"])
def test_clamp_holds_any_occluder_mask_to_the_band(direction):
    person, _ = _silhouette(0)
    H, W = person.shape
    total = person.sum()
    lo, hi = COVER_RANGE
    share = lambda m: (m & person).sum() / total
    opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}[direction]
    far_side = half_plane(person.shape, opposite, H // 2 if direction in ("top", "bottom") else W // 2)
    for occ_mask in (np.ones_like(person), np.zeros_like(person), far_side):  # all, nothing, the wrong side
        assert lo <= share(clamp_to_band(occ_mask, person, direction, COVER_RANGE)) <= hi
    # Hiding everything is clipped to the widest half-plane from `direction` that holds <= hi of the person.
    clipped = clamp_to_band(np.ones_like(person), person, direction, COVER_RANGE)
    rows, cols = clipped.any(axis=1).sum(), clipped.any(axis=0).sum()
    cut, step = {"top": (rows, 1), "bottom": (H - rows, -1), "left": (cols, 1), "right": (W - cols, -1)}[
        direction
    ]
    assert np.array_equal(clipped, half_plane(person.shape, direction, cut))
    assert share(half_plane(person.shape, direction, cut + step)) > hi


@pytest.mark.parametrize(
    "kind, direction",
    [("vehicle", "bottom"), ("pole", "left"), ("person", "right"), ("clutter", "right"), ("board", "top")],
)
def test_place_occluder_hits_the_band_even_when_asked_for_too_much(kind, direction):
    person, height = _silhouette(1)
    other = sample_identities(2, np.random.default_rng(5))[1]
    lo, hi = COVER_RANGE
    for fraction, tries in (
        (0.4, 4),
        (0.95, 1),
        (0.02, 1),
    ):  # one try at an absurd target: only the clamp helps
        occ = place_occluder(
            kind,
            direction,
            fraction,
            person,
            np.random.default_rng(7),
            other=other,
            person_size=height,
            tries=tries,
        )
        measured = (occ.mask & person).sum() / person.sum()
        assert lo <= measured <= hi and measured == pytest.approx(occ.covered)
        # the unclamped occluder of the same draws: clamped exactly when it missed the band
        raw = make_occluder(
            kind, direction, fraction, person, np.random.default_rng(7), other=other, person_size=height
        )
        raw_covered = (person_mask(raw.prims, (128, 256)) & person).sum() / person.sum()
        assert occ.clamped == (not lo <= raw_covered <= hi)
        assert (
            occ.clamped or fraction != 0.02
        )  # every kind asked for 2% hides less than 20%: the clamp is tested
        again = place_occluder(
            kind,
            direction,
            fraction,
            person,
            np.random.default_rng(7),
            other=other,
            person_size=height,
            tries=tries,
        )
        assert np.array_equal(again.mask, occ.mask)  # a function of the rng state
        canvas = occ.draw(Image.new("RGB", (128, 256), (0, 255, 0)))
        painted = np.abs(np.asarray(canvas, int) - GREEN).sum(axis=2) > 0
        assert not (painted & ~occ.mask).any()  # nothing is painted outside the occluder's mask


@pytest.mark.parametrize("seed", [-1, -100])
def test_negative_seed_is_a_user_error(tmp_path, seed):
    with pytest.raises(OccreidError, match=rf"--seed must be an integer >= 0, got {seed}"):
        generate(tmp_path / "neg", preset="small", seed=seed, progress=False)
    assert not (tmp_path / "neg").exists()
