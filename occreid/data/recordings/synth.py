"""Synthetic camera recordings with ground truth, in the MOTChallenge layout (`occreid synth-video`).

People drawn by SynthOcc's identity renderer walk across N cameras (each person through at least 2), behind
SynthOcc's occluders (vehicles, poles, boards, clutter) and each other. Per camera `DIR/camK/` holds:

    seqinfo.ini       name, frameRate, seqLength, imWidth, imHeight, imDir, imExt
    img1/000001.jpg   frames numbered from 1
    gt/gt.txt         frame, id, left, top, width, height, 1, 1, visibility  (id: the person, in every camera)
    det/det.txt       frame, -1, left, top, width, height, conf, -1, -1, -1  (jittered, missed, false alarms)
    video.mp4         H.264 (libx264) via PyAV with the `video` extra; MPEG-4 part 2 where libx264 is absent

The same seed gives the same files (frames, track files and video bytes).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from occreid.data.recordings.mot import SeqInfo, seqinfo_text
from occreid.data.synthocc.camera import background_texture, camera_style
from occreid.data.synthocc.identity import Identity, sample_identities
from occreid.data.synthocc.occluders import make_occluder, person_mask, sample_occluder_kind
from occreid.data.synthocc.render import Placement, Pose, paint, person_primitives
from occreid.errors import OccreidError
from occreid.utils.files import OVERWRITE_HINT, umask

MARKER = "synth_video.json"
VIDEO_CODECS = ("libx264", "mpeg4")  # H.264 first; MPEG-4 part 2 where a PyAV build lacks libx264
STATIC_OCCLUDERS = ("vehicle", "pole", "board", "clutter")
PAD = 200  # pixels beyond each side of the frame, so a box's visibility counts the part outside it


@dataclass(frozen=True)
class SynthVideoSettings:
    cameras: int = 3
    people: int = 8
    frames: int = 120
    fps: int = 10
    seed: int = 0
    width: int = 640
    height: int = 360


@dataclass(frozen=True)
class Walk:
    """One person crossing one camera's view: frames start..start+duration-1, centre x from x0 to x1."""

    person: int  # identity, from 1
    camera: int  # from 1
    start: int
    duration: int
    x0: float
    x1: float
    feet_y: float
    size: float  # body height in pixels
    yaw: float
    phase: float

    def place(self, frame: int) -> tuple[Placement, Pose]:
        t = (frame - self.start) / max(1, self.duration - 1)
        cx = self.x0 + t * (self.x1 - self.x0)
        step = 2 * math.pi * abs(cx - self.x0) / (0.9 * self.size)
        return Placement(cx=cx, feet_y=self.feet_y, size=self.size), Pose(self.yaw, self.phase + step, 0.35)


def check_settings(s: SynthVideoSettings) -> None:
    for name, low in (
        ("cameras", 2),
        ("people", 1),
        ("frames", 10),
        ("fps", 1),
        ("width", 160),
        ("height", 120),
    ):
        if getattr(s, name) < low:
            raise OccreidError(f"--{name} must be >= {low}, got {getattr(s, name)}")
    if s.seed < 0:
        raise OccreidError(f"--seed must be >= 0, got {s.seed}")


def plan_walks(s: SynthVideoSettings) -> list[Walk]:
    """Each person crosses 2..N cameras once, at a random time, depth, direction and view."""
    rng = np.random.default_rng([s.seed, 101])
    walks = []
    for person in range(1, s.people + 1):
        count = int(rng.integers(2, s.cameras + 1))
        for camera in sorted(int(c) + 1 for c in rng.choice(s.cameras, size=count, replace=False)):
            duration = int(rng.integers(max(8, int(0.35 * s.frames)), max(9, int(0.7 * s.frames)) + 1))
            depth = float(rng.uniform(0, 1))  # 0 far, 1 near
            rightwards = rng.random() < 0.5
            x0, x1 = -0.04 * s.width, 1.04 * s.width
            view = camera_style(s.seed, camera).view_probs
            yaw = (0.0, 180.0, 90.0 if rightwards else -90.0)[int(rng.choice(3, p=view))]
            walks.append(
                Walk(
                    person=person,
                    camera=camera,
                    start=int(rng.integers(1, s.frames - duration + 2)),
                    duration=duration,
                    x0=x0 if rightwards else x1,
                    x1=x1 if rightwards else x0,
                    feet_y=s.height * (0.72 + 0.25 * depth),
                    size=s.height * (0.42 + 0.33 * depth),
                    yaw=yaw + float(rng.uniform(-15, 15)),
                    phase=float(rng.uniform(0, 2 * math.pi)),
                )
            )
    return walks


def _shift(prims: list, dx: float) -> list:
    """Primitives moved right by `dx` pixels (lines and polygons are point lists, ellipses boxes)."""
    out = []
    for depth, kind, colour, geom, width in prims:
        if kind == "ellipse":
            geom = (geom[0] + dx, geom[1], geom[2] + dx, geom[3])
        else:
            geom = tuple((x + dx, y) for x, y in geom)
        out.append((depth, kind, colour, geom, width))
    return out


def static_occluders(s: SynthVideoSettings, camera: int) -> list[Any]:
    """Two or three occluders standing in a camera's view, each drawn by SynthOcc as if in front of a person
    on a window of the frame (a vehicle's window is wider) and moved to its place."""
    rng = np.random.default_rng([s.seed, 102, camera])
    out = []
    for _ in range(int(rng.integers(2, 4))):
        kind, direction = sample_occluder_kind(rng, STATIC_OCCLUDERS)
        window = int(s.width * (0.4 if kind == "vehicle" else 0.25))
        mask = np.zeros((s.height, window), bool)
        h = int(s.height * rng.uniform(0.45, 0.7))
        feet = int(s.height * rng.uniform(0.85, 0.98))
        mask[max(0, feet - h) : feet, window // 2 - h // 6 : window // 2 + h // 6] = True
        occluder = make_occluder(kind, direction, float(rng.uniform(0.3, 0.6)), mask, rng)
        occluder.prims = _shift(occluder.prims, float(rng.uniform(-0.1, 0.85) * s.width))
        out.append(occluder)
    return out


def _person(identity: Identity, walk: Walk, frame: int, s: SynthVideoSettings):
    """(primitives in frame coordinates, (H, W + 2 PAD) silhouette with the padding)."""
    place, pose = walk.place(frame)
    prims, _ = person_primitives(identity, pose, place)
    padded_place = Placement(cx=place.cx + PAD, feet_y=place.feet_y, size=place.size)
    padded = person_mask(person_primitives(identity, pose, padded_place)[0], (s.width + 2 * PAD, s.height))
    return prims, padded


def _box(padded: np.ndarray, s: SynthVideoSettings) -> tuple[float, float, float, float] | None:
    """The silhouette's box in frame pixels, clipped to the frame; None when it is outside."""
    ys, xs = np.nonzero(padded)
    if not len(xs):
        return None
    x0, x1 = max(0, int(xs.min()) - PAD), min(s.width, int(xs.max()) + 1 - PAD)
    y0, y1 = max(0, int(ys.min())), min(s.height, int(ys.max()) + 1)
    return (x0, y0, x1 - x0, y1 - y0) if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def render_frame(
    frame: int, camera: int, walks: list[Walk], identities: list[Identity], scene: dict, s: SynthVideoSettings
) -> tuple[Image.Image, list[tuple]]:
    """One frame of one camera and its ground-truth rows (frame, id, left, top, width, height, visibility)."""
    canvas = Image.fromarray(scene["background"])
    draw = ImageDraw.Draw(canvas)
    present = sorted(
        (w for w in walks if w.camera == camera and w.start <= frame < w.start + w.duration),
        key=lambda w: w.feet_y,  # far first: nearer people are painted over them
    )
    people = []
    for walk in present:
        prims, padded = _person(identities[walk.person - 1], walk, frame, s)
        paint(draw, prims)
        people.append((walk.person, padded))
    for occluder in scene["occluders"]:
        canvas = occluder.draw(canvas)
    rows = []
    cover = scene["occluder_mask"].copy()
    for person, padded in reversed(people):  # nearest first: what is in front covers the rest
        box = _box(padded, s)
        inside = padded[:, PAD : PAD + s.width]
        visible = float((inside & ~cover).sum()) / max(1, int(padded.sum()))
        cover |= inside
        if box is not None:
            rows.append((frame, person, *box, round(visible, 3)))
    return _camera_look(canvas, frame, scene), sorted(rows, key=lambda r: r[1])


def _camera_look(canvas: Image.Image, frame: int, scene: dict) -> Image.Image:
    style = scene["style"]
    if style.blur > 0.05:
        canvas = canvas.filter(ImageFilter.GaussianBlur(style.blur))
    out = np.asarray(canvas, np.float32) * scene["gain"] + scene["noise"][frame % len(scene["noise"])]
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def make_scene(s: SynthVideoSettings, camera: int) -> dict:
    """What stays the same in every frame of a camera: background, occluders, colour cast and noise fields."""
    style = camera_style(s.seed, camera)
    rng = np.random.default_rng([s.seed, 103, camera])
    texture = background_texture(s.seed, camera, s.height, s.width)
    oy, ox = (
        int(rng.integers(0, texture.shape[0] - s.height)),
        int(rng.integers(0, texture.shape[1] - s.width)),
    )
    occluders = static_occluders(s, camera)
    mask = np.zeros((s.height, s.width), bool)
    for occluder in occluders:
        mask |= person_mask(occluder.prims, (s.width, s.height))
    noise = rng.normal(0, style.noise, size=(4, s.height, s.width, 3)).astype(np.float32)
    return {
        "style": style,
        "background": np.ascontiguousarray(texture[oy : oy + s.height, ox : ox + s.width]),
        "occluders": occluders,
        "occluder_mask": mask,
        "gain": style.gain * np.asarray(style.cast, np.float32),
        "noise": noise,
    }


def detections(gt_rows: list[tuple], s: SynthVideoSettings, camera: int) -> list[tuple]:
    """Detector-like rows from the ground truth: jittered boxes, misses (more when hidden), false alarms."""
    rng = np.random.default_rng([s.seed, 104, camera])
    out = []
    for frame, _, x, y, w, h, vis in gt_rows:
        if rng.random() < 0.05 + 0.4 * (1 - vis):
            continue
        jx, jy, jw, jh = rng.normal(0, 0.04, size=4) * (w, h, w, h)
        conf = float(np.clip(0.55 + 0.45 * vis + rng.normal(0, 0.05), 0.05, 1.0))
        out.append((frame, x + jx, y + jy, max(2.0, w + jw), max(2.0, h + jh), conf))
    for frame in range(1, s.frames + 1):
        for _ in range(int(rng.poisson(0.2))):
            h = float(rng.uniform(0.2, 0.6) * s.height)
            x, y = float(rng.uniform(0, s.width - h / 2)), float(rng.uniform(0, s.height - h))
            out.append((frame, x, y, h / 2.5, h, float(rng.uniform(0.2, 0.6))))
    return sorted(out, key=lambda r: r[0])


class _VideoWriter:
    """H.264 (libx264, CRF 23, one thread, a fixed creation time: the same bytes every run) or MPEG-4 part 2
    via PyAV."""

    def __init__(self, path: Path, s: SynthVideoSettings, codec: str):
        import av

        self.container = av.open(str(path), "w")
        self.container.metadata["creation_time"] = "2000-01-01T00:00:00Z"  # the same bytes on every run
        self.stream = self.container.add_stream(codec, rate=s.fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = s.width, s.height, "yuv420p"
        self.stream.codec_context.thread_count = 1
        if codec == "libx264":
            # mbtree off: with it this libx264 gave different bytes for the same frames from run to run
            self.stream.options = {
                "crf": "23",
                "preset": "veryfast",
                "threads": "1",
                "x264-params": "mbtree=0",
            }
        else:
            self.stream.codec_context.bit_rate = 2_000_000

    def write(self, image: Image.Image) -> None:
        import av

        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def video_codec() -> str | None:
    """The first codec of VIDEO_CODECS this PyAV can encode; None without PyAV."""
    try:
        import av
    except ImportError:
        return None
    for name in VIDEO_CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 (PyAV raises different errors for an unknown codec across versions)
            continue
    return None


def _mot_lines(rows: list[tuple], det: bool) -> str:
    """MOT text rows; MOTChallenge pixel coordinates start at 1, so left and top are written + 1."""
    if det:
        return "".join(
            f"{f},-1,{x + 1:.2f},{y + 1:.2f},{w:.2f},{h:.2f},{c:.3f},-1,-1,-1\n" for f, x, y, w, h, c in rows
        )
    return "".join(f"{f},{i},{x + 1},{y + 1},{w},{h},1,1,{v:.3f}\n" for f, i, x, y, w, h, v in rows)


def render_camera(
    folder: Path, camera: int, walks, identities, s: SynthVideoSettings, codec: str | None
) -> int:
    """Write one camera's MOT folder; returns its number of ground-truth rows."""
    (folder / "img1").mkdir(parents=True)
    scene = make_scene(s, camera)
    writer = _VideoWriter(folder / "video.mp4", s, codec) if codec else None
    gt: list[tuple] = []
    for frame in range(1, s.frames + 1):
        image, rows = render_frame(frame, camera, walks, identities, scene, s)
        image.save(folder / "img1" / f"{frame:06d}.jpg", quality=90)
        if writer:
            writer.write(image)
        gt += rows
    if writer:
        writer.close()
    info = SeqInfo(f"cam{camera}", float(s.fps), s.frames, s.width, s.height)
    (folder / "seqinfo.ini").write_text(seqinfo_text(info))
    for name, text in (("gt", _mot_lines(gt, False)), ("det", _mot_lines(detections(gt, s, camera), True))):
        (folder / name).mkdir()
        (folder / name / f"{name}.txt").write_text(text)
    return len(gt)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OccreidError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OccreidError(f"--out {out} already exists and is not empty; {OVERWRITE_HINT}")
        if not (out / MARKER).is_file():
            raise OccreidError(
                f"--out {out} holds files that `occreid synth-video` did not write ({MARKER} is missing); "
                "--overwrite replaces only its own output, so choose another folder"
            )


def synth_video(
    out: str | Path, settings: SynthVideoSettings = SynthVideoSettings(), overwrite: bool = False
) -> dict:
    """Render the recordings into `out` (written beside it first, then moved into place). Returns the summary
    also written to `out/synth_video.json`."""
    out = Path(out)
    check_settings(settings)
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    identities = sample_identities(settings.people, np.random.default_rng([settings.seed, 100]))
    walks = plan_walks(settings)
    codec = video_codec()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rows = {
            f"cam{c}": render_camera(tmp / f"cam{c}", c, walks, identities, settings, codec)
            for c in range(1, settings.cameras + 1)
        }
        summary = {**asdict(settings), "codec": codec, "gt_rows": rows, "walks": [asdict(w) for w in walks]}
        (tmp / MARKER).write_text(json.dumps(summary, indent=1))
        tmp.chmod(0o777 & ~umask())
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
