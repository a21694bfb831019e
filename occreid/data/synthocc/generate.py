"""The SynthOcc dataset writer: plan every image (identity, camera, occluded or not) from the seed, render the
images in worker processes, and write a Market-1501-style dataset with exact keypoints and occlusion labels.

    from occreid.data.synthocc import generate
    info = generate("data/synthocc", preset="small", seed=0, protocol="occluded", workers=2)

Writes under `out`:
    bounding_box_train/, query/, bounding_box_test/   {pid:04d}_c{cam}s1_{frame:06d}_00.jpg, 128 x 64,
                                                      JPEG q=90
    keypoints.npz      KeypointStore, estimator "synthetic": relpath -> (17, 3) x, y, visibility
                       in output pixels
    annotations.json   relpath -> {"occluded", "occluder_type", "occluder_boxes", "person_box", "view",
                       "partial", ...}; boxes [x0, y0, x1, y1) in output pixels, person_box the
                       silhouette's box before the occluder
    synthocc.json      generator settings and counts (written last: its presence marks a complete dataset)

Every image is a pure function of (seed, split, index): per-image random streams are seeded with
`np.random.default_rng([seed, split_code, index, stream])`, so the output does not depend on the worker count,
and the person in an image is the same under every protocol (only the occluder or crop differs).
"""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from occreid.data.synthocc.camera import apply_style, background_texture, camera_style
from occreid.data.synthocc.identity import Identity, sample_identities
from occreid.data.synthocc.occluders import (
    COVER_RANGE,
    OCCLUDER_TYPES,
    person_mask,
    place_occluder,
    sample_occluder_kind,
)
from occreid.data.synthocc.render import Placement, paint, person_primitives, sample_pose
from occreid.errors import OccreidError
from occreid.pose.schema import NUM_KEYPOINTS

VERSION = "1.1"  # 1.1: occluders held to 20-60% coverage; partial queries an exact half/third split
HEIGHT, WIDTH = 128, 64  # output image size (Market-1501's)
SS = 2  # supersampling: scenes are drawn at (SS*HEIGHT, SS*WIDTH) and box-filtered down
JPEG_QUALITY = 90
SPLITS = ("train", "query", "gallery")
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
SPLIT_CODE = {"train": 0, "query": 1, "gallery": 2}
PROTOCOLS = ("occluded", "partial", "holistic")
PARTIAL_ROWS = {"half": HEIGHT // 2, "third": round(HEIGHT / 3)}  # output rows kept by a partial crop
OUTPUT_FILES = ("keypoints.npz", "annotations.json", "synthocc.json", "preview.png")


@dataclass(frozen=True)
class Preset:
    train_ids: int
    train_images: int  # per identity
    test_ids: int  # identities with queries
    queries: int  # per test identity
    gallery: int  # gallery images per test identity
    gallery_only_ids: int  # identities only in the gallery (as in DukeMTMC), siblings of the test identities
    gallery_only_images: int
    num_cameras: int = 6
    train_occluded: float = 0.2  # fraction of training images with an occluder (every protocol)
    gallery_occluded: float = 0.1  # fraction of gallery images with an occluder (occluded protocol)


PRESETS: dict[str, Preset] = {
    "small": Preset(
        train_ids=40,
        train_images=6,
        test_ids=30,
        queries=2,
        gallery=5,
        gallery_only_ids=10,
        gallery_only_images=3,
    ),
    "default": Preset(
        train_ids=150,
        train_images=16,
        test_ids=100,
        queries=3,
        gallery=12,
        gallery_only_ids=50,
        gallery_only_images=4,
    ),
}


@dataclass(frozen=True)
class ImageSpec:
    """Everything decided before rendering one image."""

    split: str
    index: int  # position within the split; frame = index + 1
    pid: int  # 1-based
    camid: int  # 1-based
    occluded: bool  # draw an occluder
    partial: str | None = None  # None, "half" or "third"
    occluder_kinds: tuple[str, ...] = OCCLUDER_TYPES  # the types it may draw (unseen-occluder split)

    @property
    def relpath(self) -> str:
        return f"{SPLIT_DIRS[self.split]}/{self.pid:04d}_c{self.camid}s1_{self.index + 1:06d}_00.jpg"


@dataclass
class Sample:
    image: Image.Image  # (WIDTH, HEIGHT) RGB
    keypoints: np.ndarray  # (17, 3) float32: x, y in output pixels (pixel j spans [j, j+1)), visibility 0/1
    annotation: dict


def _spread(rng: np.random.Generator, n: int, cams: list[int]) -> list[int]:
    """n camera ids covering every camera in `cams` once (when n allows), the rest drawn at random."""
    order = list(rng.permutation(cams))
    return [int(c) for c in (order + list(rng.choice(cams, size=max(0, n - len(cams)))))[:n]]


def check_train_occluders(train_occluders: Sequence[str], protocol: str) -> tuple[str, ...]:
    """The unseen-occluder split's training types, validated: a non-empty proper subset of OCCLUDER_TYPES, and
    only with the occluded protocol (the other protocols' queries have no occluder)."""
    names = tuple(dict.fromkeys(train_occluders))
    unknown = [n for n in names if n not in OCCLUDER_TYPES]
    if unknown or not names or len(names) == len(OCCLUDER_TYPES):
        raise OccreidError(
            f"--train-occluders must name some but not all of {', '.join(OCCLUDER_TYPES)} (comma-separated), "
            f"got {','.join(train_occluders) or 'nothing'}"
        )
    if protocol != "occluded":
        raise OccreidError(
            f"--train-occluders needs --protocol occluded (got {protocol}): queries are occluded"
        )
    return tuple(n for n in OCCLUDER_TYPES if n in names)


def plan_dataset(
    preset: Preset, seed: int, protocol: str, train_occluders: Sequence[str] | None = None
) -> tuple[list[Identity], list[ImageSpec]]:
    """All identities (index pid - 1) and image specs. Train pids come first, then test pids, then
    gallery-only pids; every identity is seen by >= 2 cameras; queries come from 1-2 "query cameras" of the
    identity and ~80% of its gallery images from its other cameras (at least 2), so every query has a
    cross-camera match.

    `train_occluders` (the unseen-occluder split): training images draw their occluders only from these types,
    query and gallery images only from the other types. Which images are occluded does not change."""
    if protocol not in PROTOCOLS:
        raise OccreidError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    kinds = {split: OCCLUDER_TYPES for split in SPLITS}
    if train_occluders is not None:
        seen = check_train_occluders(train_occluders, protocol)
        unseen = tuple(k for k in OCCLUDER_TYPES if k not in seen)
        kinds = {"train": seen, "query": unseen, "gallery": unseen}
    n_ids = preset.train_ids + preset.test_ids + preset.gallery_only_ids
    identities = sample_identities(n_ids, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng([seed, 2])
    cams_all = list(range(1, preset.num_cameras + 1))
    rows: dict[str, list[tuple[int, int]]] = {s: [] for s in SPLITS}  # split -> [(pid, camid)]

    def camera_set(lo: int, hi: int) -> list[int]:
        return sorted(int(c) for c in rng.choice(cams_all, size=int(rng.integers(lo, hi + 1)), replace=False))

    for pid in range(1, preset.train_ids + 1):
        cams = camera_set(2, min(5, preset.num_cameras))
        rows["train"] += [(pid, c) for c in _spread(rng, max(preset.train_images, 2), cams)]
    first_test = preset.train_ids + 1
    for pid in range(first_test, first_test + preset.test_ids):
        cams = camera_set(3, min(5, preset.num_cameras))
        qcams = sorted(
            int(c) for c in rng.permutation(cams)[: 1 + int(preset.queries >= 3 and rng.random() < 0.5)]
        )
        others = [c for c in cams if c not in qcams]
        rows["query"] += [(pid, c) for c in _spread(rng, preset.queries, qcams)]
        n_same = min(int(round(0.2 * preset.gallery)), max(0, preset.gallery - 2))
        gallery = _spread(rng, preset.gallery - n_same, others) + _spread(rng, n_same, qcams)
        rows["gallery"] += [(pid, c) for c in gallery]
    for pid in range(first_test + preset.test_ids, n_ids + 1):
        cams = camera_set(2, min(4, preset.num_cameras))
        rows["gallery"] += [(pid, c) for c in _spread(rng, max(preset.gallery_only_images, 2), cams)]

    specs: list[ImageSpec] = []
    for split in SPLITS:
        split_rows = sorted(rows[split])
        n = len(split_rows)
        occluded = np.zeros(n, bool)
        partial: list[str | None] = [None] * n
        if split == "train":
            occluded[rng.permutation(n)[: round(preset.train_occluded * n)]] = True
        elif split == "query" and protocol == "occluded":
            occluded[:] = True
        elif split == "query" and protocol == "partial":
            # an exact split, as in Partial-Duke: floor(n/2) upper halves, the rest upper thirds
            halves = set(rng.permutation(n)[: n // 2].tolist())
            partial = ["half" if i in halves else "third" for i in range(n)]
        elif split == "gallery" and protocol == "occluded":
            occluded[rng.permutation(n)[: round(preset.gallery_occluded * n)]] = True
        specs += [
            ImageSpec(split, i, pid, cam, bool(occluded[i]), partial[i], kinds[split])
            for i, (pid, cam) in enumerate(split_rows)
        ]
    return identities, specs


def _pool_range(spec: ImageSpec, preset: Preset) -> tuple[int, int]:
    """The pids (first, last) whose identities may appear as other persons in this image: same split side."""
    if spec.split == "train":
        return 1, preset.train_ids
    return preset.train_ids + 1, preset.train_ids + preset.test_ids + preset.gallery_only_ids


def render_sample(
    spec: ImageSpec, identities: list[Identity], seed: int, preset: Preset, clean: bool = False
) -> Sample:
    """Render one image. `clean=True` draws only the person on a flat pure-green background with no camera
    style, background people or occluder (the keypoints and pose are those of the normal image; visibility
    then only reflects the frame and the partial crop)."""
    base = [seed, SPLIT_CODE[spec.split], spec.index]
    rng_person, rng_occ, rng_bg = (np.random.default_rng(base + [k]) for k in range(3))
    style = camera_style(seed, spec.camid)
    CW, CH = SS * WIDTH, SS * HEIGHT
    identity = identities[spec.pid - 1]
    lo, hi = _pool_range(spec, preset)

    # Person: view from the camera's preferences, walking pose, position and scale jitter.
    view = ("front", "back", "side")[int(rng_person.choice(3, p=style.view_probs))]
    pose = sample_pose(rng_person, view)
    size = min(CH * rng_person.uniform(0.80, 0.92) * identity.height, CH * 0.96) / identity.height
    place = Placement(
        cx=CW / 2 + rng_person.uniform(-0.08, 0.08) * CW,
        feet_y=CH - rng_person.uniform(0.01, 0.06) * CH,
        size=size,
    )
    prims, kp = person_primitives(identity, pose, place)

    # Background: a window of the camera's texture, sometimes a smaller pedestrian further away.
    if clean:
        canvas = Image.new("RGB", (CW, CH), (0, 255, 0))
    else:
        tex = background_texture(seed, spec.camid, CH, CW)
        oy, ox = int(rng_bg.integers(0, tex.shape[0] - CH)), int(rng_bg.integers(0, tex.shape[1] - CW))
        canvas = Image.fromarray(tex[oy : oy + CH, ox : ox + CW])
    draw = ImageDraw.Draw(canvas)
    if not clean and rng_bg.random() < 0.3:
        far = identities[int(rng_bg.integers(lo, hi + 1)) - 1]
        far_size = size * rng_bg.uniform(0.45, 0.65)
        side = -1 if rng_bg.random() < 0.5 else 1
        far_place = Placement(
            cx=CW / 2 + side * CW * rng_bg.uniform(0.35, 0.55),
            feet_y=CH * rng_bg.uniform(0.55, 0.75),
            size=far_size,
        )
        paint(
            draw,
            person_primitives(
                far, sample_pose(rng_bg, ("front", "back", "side")[int(rng_bg.integers(3))]), far_place
            )[0],
        )
    paint(draw, prims)

    # Occluder, placed from the silhouette; drawn on top, its mask decides keypoint visibility.
    occ_mask = np.zeros((CH, CW), bool)
    annotation: dict = {
        "occluded": False,
        "occluder_type": None,
        "occluder_direction": None,
        "occluder_boxes": [],
        "occluded_fraction": 0.0,
        "view": pose.view,
        "yaw": round(pose.yaw, 1),
        "partial": spec.partial,
    }
    pmask = person_mask(prims, (CW, CH))  # the silhouette, before any occluder covers it
    ys, xs = np.nonzero(pmask)
    if len(xs):  # ground truth for analyses (e.g. what OGFR's agent erases); the image does not change
        annotation["person_box"] = _output_box(xs.min(), ys.min(), xs.max(), ys.max(), spec.partial)
    if spec.occluded and not clean:
        kind, direction = sample_occluder_kind(rng_occ, spec.occluder_kinds)
        fraction = float(rng_occ.uniform(*COVER_RANGE))
        other_pid = int(rng_occ.integers(lo, hi))  # a different identity of the same side of the split
        other = identities[(other_pid if other_pid < spec.pid else other_pid + 1) - 1]
        occ = place_occluder(
            kind, direction, fraction, pmask, rng_occ, other=other, person_size=size * identity.height
        )
        occ_mask = occ.mask
        canvas = occ.draw(canvas)
        ys, xs = np.nonzero(occ_mask)
        annotation.update(
            occluded=True,
            occluder_type=kind,
            occluder_direction=direction,
            occluded_fraction=round(occ.covered, 3),
        )
        if len(xs):
            annotation["occluder_boxes"] = [_output_box(xs.min(), ys.min(), xs.max(), ys.max(), spec.partial)]

    # Visibility on the canvas: inside the frame and not under the occluder.
    ix, iy = np.floor(kp[:, 0] + 0.5).astype(int), np.floor(kp[:, 1] + 0.5).astype(int)
    crop_rows = SS * PARTIAL_ROWS[spec.partial] if spec.partial else CH
    inside = (ix >= 0) & (ix < CW) & (iy >= 0) & (iy < crop_rows)
    vis = inside.copy()
    vis[inside] = ~occ_mask[iy[inside], ix[inside]]

    # Crop (partial), downsample, camera style.
    if spec.partial:
        canvas = canvas.crop((0, 0, CW, crop_rows))
        annotation["occluded"] = True
    image = canvas.resize((WIDTH, HEIGHT), Image.BOX)
    if not clean:
        if style.blur > 0.05:
            image = image.filter(ImageFilter.GaussianBlur(style.blur))
        image = Image.fromarray(apply_style(np.asarray(image), style, rng_bg))
    keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    keypoints[:, 0] = (kp[:, 0] + 0.5) * WIDTH / CW
    keypoints[:, 1] = (kp[:, 1] + 0.5) * HEIGHT / crop_rows
    keypoints[:, 2] = vis
    return Sample(image=image, keypoints=keypoints, annotation=annotation)


def _output_box(x0: int, y0: int, x1: int, y1: int, partial: str | None) -> list[int]:
    """A canvas-pixel box (inclusive) as an output-pixel [x0, y0, x1, y1) box, clipped to the image."""
    rows = SS * PARTIAL_ROWS[partial] if partial else SS * HEIGHT
    sy = HEIGHT / rows
    return [
        int(math.floor(x0 / SS)),
        int(math.floor(y0 * sy)),
        min(WIDTH, int(math.ceil((x1 + 1) / SS))),
        min(HEIGHT, int(math.ceil((y1 + 1) * sy))),
    ]


def encode_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


# Worker state, set once per process by `_init_worker`.
_STATE: dict = {}


def _init_worker(identities: list[Identity], seed: int, preset: Preset, out: str) -> None:
    _STATE.update(identities=identities, seed=seed, preset=preset, out=Path(out))


def _render_chunk(specs: list[ImageSpec]) -> list[tuple[str, np.ndarray, dict]]:
    results = []
    for spec in specs:
        sample = render_sample(spec, _STATE["identities"], _STATE["seed"], _STATE["preset"])
        (_STATE["out"] / spec.relpath).write_bytes(encode_jpeg(sample.image))
        results.append((spec.relpath, sample.keypoints, sample.annotation))
    return results


STARTED_MARKER = ".synthocc-started"  # written before the first image, removed once synthocc.json is written


def written_by_synthocc(out: Path) -> bool:
    """`out` holds a SynthOcc dataset, complete (synthocc.json of this generator) or interrupted (the start
    marker): what --overwrite may replace. A real dataset in the same layout has neither."""
    if (out / STARTED_MARKER).is_file():
        return True
    try:
        info = json.loads((out / "synthocc.json").read_text())
        if isinstance(info, dict) and info.get("generator") == "occreid.data.synthocc":
            return True
    except (OSError, ValueError):
        pass
    try:  # an interrupted run of a version without the start marker: SynthOcc's own annotations
        annotations = json.loads((out / "annotations.json").read_text())
        first = next(iter(annotations.values()), None) if isinstance(annotations, dict) else None
        return isinstance(first, dict) and "occluder_boxes" in first
    except (OSError, ValueError):
        return False


def _prepare_out(out: Path, force: bool) -> None:
    from occreid.utils.files import check_writable_dir

    ours = [out / d for d in SPLIT_DIRS.values()] + [out / f for f in OUTPUT_FILES]
    existing = [p for p in ours if p.exists()]
    if out.exists() and not out.is_dir():
        raise OccreidError(f"--out {out} is a file, not a folder")
    if existing and not force:
        raise OccreidError(
            f"--out {out} already holds a dataset ({existing[0].name} exists); choose another folder or pass "
            "--overwrite (or --force) to replace the SynthOcc dataset in it"
        )
    if existing and not written_by_synthocc(out):
        raise OccreidError(
            f"--out {out} holds {', '.join(p.name for p in existing[:4])} that `occreid synth` did not write "
            f"(no synthocc.json of SynthOcc's generator, no {STARTED_MARKER}); --overwrite only replaces a "
            "SynthOcc dataset, so nothing was deleted: choose an empty folder"
        )
    check_writable_dir(out, "--out")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    (out / STARTED_MARKER).write_text("occreid synth is writing a SynthOcc dataset here\n")
    for d in SPLIT_DIRS.values():
        (out / d).mkdir(parents=True)


def generate(
    out: str | Path,
    preset: str = "default",
    seed: int = 0,
    protocol: str = "occluded",
    workers: int = 2,
    force: bool = False,
    progress: bool = True,
    train_occluders: Sequence[str] | None = None,
) -> dict:
    """Render a SynthOcc dataset to `out` and return the contents of its synthocc.json.

    `train_occluders`: the unseen-occluder split (see `plan_dataset`); recorded in synthocc.json as
    "train_occluders" and "test_occluders" (both null without it)."""
    from occreid.pose.store import KeypointStore

    if preset not in PRESETS:
        raise OccreidError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OccreidError(f"--seed must be an integer >= 0, got {seed!r}")
    if workers < 1:
        raise OccreidError(f"--workers must be >= 1, got {workers}")
    cfg = PRESETS[preset]
    identities, specs = plan_dataset(cfg, seed, protocol, train_occluders)
    out = Path(out)
    _prepare_out(out, force)

    chunks = [specs[i : i + 32] for i in range(0, len(specs), 32)]
    results: list[tuple[str, np.ndarray, dict]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(specs), desc=f"synthocc {preset}/{protocol}", unit="img")
    if workers == 1:
        _init_worker(identities, seed, cfg, str(out))
        for chunk in chunks:
            results += _render_chunk(chunk)
            bar and bar.update(len(chunk))
    else:
        import multiprocessing as mp

        # fork where the OS has it: workers only use numpy/PIL (never CUDA), and callers' scripts need no
        # `if __name__ == "__main__":` guard; spawn elsewhere (Windows).
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(identities, seed, cfg, str(out))) as pool:
            for part in pool.imap(_render_chunk, chunks):
                results += part
                bar and bar.update(len(part))
    if bar is not None:
        bar.close()

    store = KeypointStore(
        estimator="synthetic",
        settings={
            "generator": "synthocc",
            "version": VERSION,
            "seed": seed,
            "preset": preset,
            "protocol": protocol,
        },
    )
    split_kinds = {spec.split: spec.occluder_kinds for spec in specs}
    if train_occluders is not None:  # visibility depends on the occluders
        store.settings["train_occluders"] = list(split_kinds["train"])
    annotations = {}
    for relpath, kpts, ann in results:
        store.add(relpath, kpts)
        annotations[relpath] = ann
    store.save(out / "keypoints.npz")
    (out / "annotations.json").write_text(json.dumps(annotations, indent=0, sort_keys=True))

    counts = {}
    for split in SPLITS:
        s = [sp for sp in specs if sp.split == split]
        counts[split] = {
            "identities": len({sp.pid for sp in s}),
            "images": len(s),
            "cameras": len({sp.camid for sp in s}),
            "occluded": sum(annotations[sp.relpath]["occluded"] for sp in s),
        }
    info = {
        "generator": "occreid.data.synthocc",
        "version": VERSION,
        "preset": preset,
        "seed": seed,
        "protocol": protocol,
        "image_size": [HEIGHT, WIDTH],
        "jpeg_quality": JPEG_QUALITY,
        "num_cameras": cfg.num_cameras,
        "settings": asdict(cfg),
        "counts": counts,
        # the unseen-occluder split: training occluders only of these types, query/gallery ones of the others
        "train_occluders": list(split_kinds["train"]) if train_occluders is not None else None,
        "test_occluders": list(split_kinds["query"]) if train_occluders is not None else None,
    }
    marker = out / "synthocc.json"  # the completion marker: written last, and atomically
    marker.with_suffix(".json.tmp").write_text(json.dumps(info, indent=2))
    marker.with_suffix(".json.tmp").replace(marker)
    (out / STARTED_MARKER).unlink(missing_ok=True)
    return info
