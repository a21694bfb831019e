"""Occluder sources: what an occluder looks like (docs/ogfr.md section 1).

Each source fills a (h, w) box with occluder pixels and says which of them the occluder covers:
`(rgb (h, w, 3) uint8, alpha (h, w) bool)`. Where the occluder goes is `occreid.data.occlusion.paste`'s job.

- image: a crop of another training image (FED's recipe), resized to the box;
- background: a crop of another training image's outer quarter of columns (left or right), where a ReID
  crop shows mostly background, resized to the box;
- shape: a synthetic shape, a random base colour with random ellipses, bars or stripes on it;
- synthocc_vehicle / _pole / _board / _person / _clutter: SynthOcc's occluder renderers
  (`occreid.data.synthocc.occluders.make_occluder`) drawn into the box from the side the occluder is attached
  to; their alpha is the rendered silhouette (not the whole box).

The image and shape sources cover the whole box. Random numbers come from torch (the global generator unless
one is given), so DataLoader workers reproduce; SynthOcc's renderers take a numpy generator seeded from torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

SYNTHOCC_PREFIX = "synthocc_"

OtherImage = Callable[[], np.ndarray]  # -> (H0, W0, 3) uint8: another training image, as stored
Occluder = tuple[np.ndarray, np.ndarray]  # rgb (h, w, 3) uint8, alpha (h, w) bool


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def synthocc_sides(source: str) -> tuple[str, ...]:
    """The sides (top, bottom, left, right) a SynthOcc renderer source can be attached to."""
    from occreid.data.synthocc.occluders import DIRECTIONS

    return tuple(DIRECTIONS[source.removeprefix(SYNTHOCC_PREFIX)])


def image_crop(
    other: np.ndarray, h: int, w: int, generator: torch.Generator | None = None, stretch: float = 1.0
) -> Occluder:
    """A random crop of `other` (H0, W0, 3) with the box's aspect ratio in the view's geometry, 1/2 to all of
    the largest such crop, resized to (h, w); covers the whole box. `stretch` = (H0 / H) / (W0 / W), how much
    taller `other` is than the (H, W) view it is pasted into, relative to its width."""
    H, W = other.shape[:2]
    aspect = h / w * stretch  # rows per column of the crop in `other`'s pixels
    scale = 0.5 + 0.5 * _rand(generator)
    largest_w = min(W, H / aspect)  # the widest crop of that aspect ratio that fits
    cw = max(1, min(W, round(scale * largest_w)))
    ch = max(1, min(H, round(scale * largest_w * aspect)))
    top, left = _randint(0, H - ch, generator), _randint(0, W - cw, generator)
    return _resize(np.ascontiguousarray(other[top : top + ch, left : left + cw]), h, w), np.ones((h, w), bool)


def person_crop(other: np.ndarray, h: int, w: int, stretch: float = 1.0) -> Occluder:
    """The central columns of `other` (another identity's image, where its person stands) with the box's
    aspect ratio (in the view's geometry, see `image_crop`) at full height, resized to (h, w); covers the
    box."""
    H, W = other.shape[:2]
    cw = max(1, min(W, round(H * w / (h * stretch))))
    left = (W - cw) // 2
    return _resize(np.ascontiguousarray(other[:, left : left + cw]), h, w), np.ones((h, w), bool)


def background_crop(other: np.ndarray, h: int, w: int, generator: torch.Generator | None = None) -> Occluder:
    """A random (h', w') crop of the outer quarter of `other`'s columns (left or right), resized to (h, w)."""
    H, W = other.shape[:2]
    strip = max(1, W // 4)
    cols = other[:, :strip] if _rand(generator) < 0.5 else other[:, W - strip :]
    ch = max(1, min(H, _randint(H // 4, H, generator)))
    top = _randint(0, H - ch, generator)
    return _resize(np.ascontiguousarray(cols[top : top + ch]), h, w), np.ones((h, w), bool)


def synthetic_shape(h: int, w: int, generator: torch.Generator | None = None) -> Occluder:
    """A random base colour with 1-4 random ellipses, bars or stripes in other colours; covers the box."""
    from PIL import Image, ImageDraw

    def colour() -> tuple[int, int, int]:
        return tuple(_randint(0, 255, generator) for _ in range(3))

    canvas = Image.new("RGB", (w, h), colour())
    draw = ImageDraw.Draw(canvas)
    for _ in range(_randint(1, 4, generator)):
        x0, y0 = _randint(0, w - 1, generator), _randint(0, h - 1, generator)
        x1, y1 = _randint(x0, w, generator), _randint(y0, h, generator)
        kind = _randint(0, 2, generator)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour())
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour())
        else:  # stripes across the box
            step, fill = _randint(3, 8, generator), colour()
            for y in range(0, h, 2 * step):
                draw.rectangle((0, y, w, y + step - 1), fill=fill)
    return np.asarray(canvas), np.ones((h, w), bool)


def synthocc_occluder(
    source: str,
    side: str,
    h: int,
    w: int,
    generator: torch.Generator | None = None,
    render_scale: float = 1.0,
) -> Occluder:
    """SynthOcc's renderer `source` (e.g. "synthocc_vehicle") attached to `side` of a (h, w) box.

    The box stands in for the person's silhouette: the renderer is asked to hide 85-100% of it from `side`,
    so the occluder starts at that edge. The person renderer draws a pedestrian of a random SynthOcc identity
    instead (`_pedestrian`). Drawn at `render_scale` times the box (SynthOcc's own pixel scale:
    its canvas is 256 rows high) and box-filtered down; alpha is the drawn silhouette at >= half coverage (the
    whole box if that leaves nothing, so an occluder is never empty).
    """
    from PIL import Image, ImageDraw

    from occreid.data.synthocc.occluders import make_occluder, person_mask
    from occreid.data.synthocc.render import paint

    kind = source.removeprefix(SYNTHOCC_PREFIX)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
    H, W = max(2, round(h * render_scale)), max(2, round(w * render_scale))
    if kind == "person":
        prims = _pedestrian(side, H, W, rng)
    else:
        fraction = float(rng.uniform(0.85, 1.0))
        prims = make_occluder(kind, side, fraction, np.ones((H, W), bool), rng).prims
    layer = Image.new("RGB", (W, H), tuple(int(c) for c in prims[0][2]))
    paint(ImageDraw.Draw(layer), prims)
    alpha = Image.fromarray(person_mask(prims, (W, H)).astype(np.uint8) * 255)
    if (H, W) != (h, w):
        layer, alpha = layer.resize((w, h), Image.BOX), alpha.resize((w, h), Image.BOX)
    covered = np.asarray(alpha) >= 128
    if not covered.any():  # drawn thinner than a pixel of the box: the box in the occluder's first colour
        covered = np.ones((h, w), bool)
    return np.asarray(layer), covered


def _pedestrian(side: str, H: int, W: int, rng: np.random.Generator) -> list:
    """SynthOcc primitives of a random pedestrian in an (H, W) canvas attached to `side`: beside the target
    (left/right: standing, body 85-100% of H, centred in the strip) or closer to the camera (bottom: head and
    shoulders, body 3-4.5 x H, head near the top of the box)."""
    from occreid.data.synthocc.identity import sample_identity
    from occreid.data.synthocc.render import VIEWS, Placement, person_primitives, sample_pose

    other = sample_identity(rng)
    pose = sample_pose(rng, VIEWS[int(rng.integers(len(VIEWS)))])
    if side == "bottom":
        body = H * rng.uniform(3.0, 4.5)
        place = Placement(
            W / 2 + rng.uniform(-0.1, 0.1) * W, H * rng.uniform(0.0, 0.2) + body, body / other.height
        )
    else:
        body = H * rng.uniform(0.85, 1.0)
        place = Placement(
            W / 2 + rng.uniform(-0.1, 0.1) * W, H - rng.uniform(0, 0.03) * H, body / other.height
        )
    return person_primitives(other, pose, place)[0]


def draw_occluder(
    source: str,
    side: str,
    h: int,
    w: int,
    other_image: OtherImage,
    view_size: tuple[int, int],
    generator: torch.Generator | None = None,
    render_scale: float = 1.0,
    person: bool = False,
) -> Occluder:
    """An occluder of `source` for a (h, w) box of a `view_size` = (H, W) view, attached to `side` (top,
    bottom, left, right; for a block, the side a SynthOcc renderer grows from). `other_image` gives another
    identity's training image (image, background, person); it is cropped as stored and only the crop is
    resized.
    `person`: the occluder is another person (the image source then crops its centre)."""
    if source == "image":
        other = other_image()
        stretch = (other.shape[0] / view_size[0]) / (other.shape[1] / view_size[1])
        if person:
            return person_crop(other, h, w, stretch)
        return image_crop(other, h, w, generator, stretch)
    if source == "background":
        return background_crop(other_image(), h, w, generator)
    if source == "shape":
        return synthetic_shape(h, w, generator)
    if source.startswith(SYNTHOCC_PREFIX):
        return synthocc_occluder(source, side, h, w, generator, render_scale)
    raise ValueError(f"unknown occluder source {source!r}")
