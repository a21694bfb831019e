"""Occluders that hide part of the person: vehicles, poles and trees, boards, other persons and clutter.

Each occluder is placed from the person's silhouette: for a target fraction f of the person's pixels and a
direction (bottom, top, left or right), the cut line is where the silhouette's cumulative row (or column) mass
reaches f, and the occluder covers everything beyond it (up to its own irregular edge). `place_occluder` then
measures the fraction actually hidden and holds it to COVER_RANGE (20-60%): it redraws the occluder, asking
for a fraction corrected by the last miss, up to PLACEMENT_TRIES times, and if every try misses, clamps the
last one's geometry (see `clamp_to_band`). Occluder colours are drawn partly from the clothing palette, so a
model that looks at the whole image can mistake an occluder for clothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from occreid.data.synthocc.identity import UPPER, Identity
from occreid.data.synthocc.render import Placement, Primitive, paint, person_primitives, sample_pose

OCCLUDER_TYPES = ("vehicle", "pole", "board", "person", "clutter")
COVER_RANGE = (0.2, 0.6)  # fraction of the person's pixels an occluder hides
PLACEMENT_TRIES = 4
DIRECTIONS: dict[str, dict[str, float]] = {
    "vehicle": {"bottom": 1.0},
    "pole": {"left": 0.45, "right": 0.45, "top": 0.1},  # top: tree foliage
    "board": {"bottom": 0.4, "left": 0.25, "right": 0.25, "top": 0.1},
    "person": {"left": 0.35, "right": 0.35, "bottom": 0.3},
    "clutter": {"bottom": 0.6, "left": 0.2, "right": 0.2},
}
CAR_COLOURS = [(200, 200, 205), (30, 30, 35), (150, 20, 25), (40, 60, 130), (120, 120, 125), (230, 230, 230)]
POLE_COLOURS = [(120, 120, 125), (95, 70, 45), (40, 70, 45), (60, 60, 65), (180, 180, 170)]
GREENS = [(50, 100, 45), (70, 125, 55), (35, 80, 40), (95, 130, 60)]


@dataclass
class Occluder:
    kind: str
    direction: str
    prims: list[Primitive]
    # Set by `place_occluder`: the (H, W) canvas pixels the occluder covers, the fraction of the person it
    # hides, and whether its geometry was clamped (then `mask` is not simply the painted primitives).
    mask: np.ndarray | None = None
    covered: float = 0.0
    clamped: bool = False

    def draw(self, canvas: Image.Image) -> Image.Image:
        """`canvas` with the occluder on top; a clamped occluder is painted through its mask, with the part
        added by the clamp in the colour of its first primitive."""
        if not self.clamped:
            paint(ImageDraw.Draw(canvas), self.prims)
            return canvas
        layer = Image.new("RGB", canvas.size, tuple(int(c) for c in self.prims[0][2]))
        paint(ImageDraw.Draw(layer), self.prims)
        return Image.composite(layer, canvas, Image.fromarray(self.mask.astype(np.uint8) * 255))


def person_mask(prims: list[Primitive], size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) silhouette of primitives on a canvas of `size` = (W, H)."""
    mask = Image.new("L", size, 0)
    paint(ImageDraw.Draw(mask), prims, fill=255)
    return np.asarray(mask) > 127


def cut_line(mask: np.ndarray, direction: str, fraction: float) -> int:
    """The row (top/bottom) or column (left/right) beyond which `fraction` of the silhouette lies."""
    counts = mask.sum(axis=1 if direction in ("top", "bottom") else 0).astype(np.float64)
    cum = np.cumsum(counts) / max(counts.sum(), 1.0)
    target = fraction if direction in ("top", "left") else 1.0 - fraction
    return int(np.searchsorted(cum, target))


def half_plane(shape: tuple[int, int], direction: str, cut: int) -> np.ndarray:
    """(H, W) mask of the rows (top/bottom) or columns (left/right) beyond `cut` seen from `direction`:
    top: rows < cut, bottom: rows >= cut, left: columns < cut, right: columns >= cut."""
    H, W = shape
    rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
    beyond = {"top": rows < cut, "bottom": rows >= cut, "left": cols < cut, "right": cols >= cut}[direction]
    return np.broadcast_to(beyond, shape)


def clamp_to_band(
    occ_mask: np.ndarray, person: np.ndarray, direction: str, band: tuple[float, float]
) -> np.ndarray:
    """The occluder mask clamped so that it hides a fraction of `person` inside `band` = (lo, hi).

    With A the smallest half-plane from `direction` holding >= lo of the person and B the largest holding
    <= hi (A inside B), the result is (occ_mask & B) | A: it hides at least A's share and at most B's, so the
    fraction is in the band whenever one row/column of the silhouette holds less than hi - lo of it.
    """
    lo, hi = band
    along = person.sum(axis=1 if direction in ("top", "bottom") else 0).astype(np.float64)
    total = max(along.sum(), 1.0)
    n = len(along)
    # mass[c] = the person's share beyond cut c, for c = 0..n
    before = np.concatenate([[0.0], np.cumsum(along)]) / total
    mass = before if direction in ("top", "left") else 1.0 - before
    cuts = np.arange(n + 1)
    inner = cuts[mass <= hi]
    outer = cuts[mass >= lo]
    b = int(inner[np.argmax(mass[inner])])
    a = int(outer[np.argmin(mass[outer])])
    if mass[a] > hi:  # one row/column spans the whole band: stay under hi
        a = b
    return (occ_mask & half_plane(person.shape, direction, b)) | half_plane(person.shape, direction, a)


def place_occluder(
    kind: str,
    direction: str,
    fraction: float,
    person: np.ndarray,
    rng: np.random.Generator,
    other: Identity | None = None,
    person_size: float = 200.0,
    band: tuple[float, float] = COVER_RANGE,
    tries: int = PLACEMENT_TRIES,
) -> Occluder:
    """An occluder from `direction` hiding a fraction of the silhouette `person` (H, W) inside `band`, aimed
    at `fraction`. Each try draws a new occluder from `rng` (so the result is a function of the rng's state)
    asking for the target corrected by the previous miss; after `tries` misses the try closest to the band is
    clamped with `clamp_to_band`. The returned Occluder has `mask`, `covered` and `clamped` set."""
    lo, hi = band
    H, W = person.shape
    total = max(int(person.sum()), 1)
    request = fraction
    best: tuple[float, Occluder] | None = None
    for _ in range(tries):
        occ = make_occluder(kind, direction, request, person, rng, other=other, person_size=person_size)
        occ.mask = person_mask(occ.prims, (W, H))
        occ.covered = float((person & occ.mask).sum() / total)
        if lo <= occ.covered <= hi:
            return occ
        miss = max(lo - occ.covered, occ.covered - hi)
        if best is None or miss < best[0]:
            best = (miss, occ)
        request = float(np.clip(request + fraction - occ.covered, 0.02, 0.98))
    occ = best[1]
    occ.mask = clamp_to_band(occ.mask, person, direction, band)
    occ.covered = float((person & occ.mask).sum() / total)
    occ.clamped = True
    return occ


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _rect(d, colour, x0, y0, x1, y1) -> Primitive:
    return (d, "polygon", tuple(int(v) for v in colour), ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), 0)


def _clothing_or(rng: np.random.Generator, palette: list) -> tuple[int, int, int]:
    return _pick(rng, list(UPPER.values())) if rng.random() < 0.4 else _pick(rng, palette)


def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """One integer drawn from [lo, hi)."""
    return int(rng.integers(lo, hi))


@dataclass(frozen=True)
class _Frame:
    """Where an occluder goes: canvas size, the person's box, the cut line and a span beyond the person."""

    H: int
    W: int
    x0: int
    x1: int
    y0: int
    y1: int
    cut: int
    xa: int
    xb: int


def _vehicle(rng: np.random.Generator, fr: _Frame) -> list[Primitive]:
    """A car seen from the side, its top edge at the cut; draws its colour, extent and wheel positions."""
    H, W, cut = fr.H, fr.W, fr.cut
    prims: list[Primitive] = []
    colour = _pick(rng, CAR_COLOURS)
    xa, xb = (-5, W + 5) if rng.random() < 0.6 else (fr.xa, fr.xb)
    prims.append(_rect(0, colour, xa, cut, xb, H + 5))
    body = H - cut
    if body > 40:  # side windows and a trim line
        prims.append(_rect(1, (55, 65, 80), xa + 8, cut + 6, xb - 8, cut + 6 + 0.3 * body))
        prims.append(
            _rect(1, tuple(int(c * 0.7) for c in colour), xa, cut + 0.55 * body, xb, cut + 0.58 * body)
        )
    r = min(22, max(8, body // 3))
    for wx in (xa + _randint(rng, 10, 40), xb - _randint(rng, 10, 40)):
        prims.append((2, "ellipse", (15, 15, 15), (wx - r, H - r, wx + r, H + r), 0))
    return prims


def _foliage(rng: np.random.Generator, fr: _Frame) -> list[Primitive]:
    """Tree foliage hanging from the top; draws each leaf ball's radius and green, then the canopy's green."""
    prims: list[Primitive] = []
    for x in range(fr.xa - 10, fr.xb + 10, 14):
        r = _randint(rng, 12, 20)
        prims.append((1, "ellipse", _pick(rng, GREENS), (x - r, fr.cut - 2 * r + 4, x + r, fr.cut + 4), 0))
    prims.insert(0, _rect(0, _pick(rng, GREENS), fr.xa - 10, -5, fr.xb + 10, fr.cut - 10))
    return prims


def _pole(rng: np.random.Generator, direction: str, fr: _Frame) -> list[Primitive]:
    """A pole or trunk from the top of the image to the bottom; draws its colour and its dark bands."""
    H = fr.H
    prims: list[Primitive] = []
    colour = _pick(rng, POLE_COLOURS)
    a, b = (fr.xa, fr.cut) if direction == "left" else (fr.cut, fr.xb)
    prims.append(_rect(0, colour, a, -5, b, H + 5))
    hl = a + (b - a) * 0.25
    prims.append(
        _rect(
            1,
            tuple(min(255, int(c * 1.25) + 10) for c in colour),
            hl,
            -5,
            hl + max(2, (b - a) // 8),
            H + 5,
        )
    )
    for yb in rng.integers(0, H, size=_randint(rng, 0, 3)):
        prims.append(_rect(1, tuple(int(c * 0.7) for c in colour), a, yb, b, yb + 6))
    return prims


def _board(rng: np.random.Generator, direction: str, fr: _Frame) -> list[Primitive]:
    """A sign board with a frame and "text" bars; draws its colour, top (from the side) and bar lengths."""
    H, cut, xa, xb, y0 = fr.H, fr.cut, fr.xa, fr.xb, fr.y0
    prims: list[Primitive] = []
    colour = _clothing_or(rng, [(240, 240, 235), (230, 200, 50), (40, 80, 160), (40, 120, 60), (150, 40, 40)])
    if direction == "bottom":
        box = (xa, cut, xb, H + 5)
    elif direction == "top":
        box = (xa, -5, xb, cut)
    elif direction == "left":
        box = (xa, y0 - _randint(rng, 5, 40), cut, H + 5)
    else:
        box = (cut, y0 - _randint(rng, 5, 40), xb, H + 5)
    bx0, by0, bx1, by1 = box
    prims.append(_rect(0, (60, 60, 60), bx0, by0, bx1, by1))
    prims.append(_rect(1, colour, bx0 + 3, by0 + 3, bx1 - 3, by1 - 3))
    text = tuple(int(c * 0.45) for c in colour) if sum(colour) > 300 else (230, 230, 230)
    for ty in np.arange(by0 + 10, min(by1, H) - 8, 14):
        tw = (bx1 - bx0 - 16) * rng.uniform(0.4, 0.9)
        prims.append(_rect(2, text, bx0 + 8, ty, bx0 + 8 + tw, ty + 5))
    return prims


def _person_placements(
    rng: np.random.Generator, direction: str, fr: _Frame, other: Identity, person_size: float
) -> list[Placement]:
    """Candidate placements of an occluding pedestrian; draws its size and its centre (bottom) or feet row."""
    H, W, x0, x1, y0, y1 = fr.H, fr.W, fr.x0, fr.x1, fr.y0, fr.y1
    if direction == "bottom":  # closer to the camera: bigger, only head and shoulders in the frame
        size = person_size * rng.uniform(1.25, 1.7)
        cx = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * W
        return [
            Placement(cx, y + size * other.height * 0.97, size)
            for y in np.linspace(y0 + 0.3 * (y1 - y0), y1, 12)
        ]
    # beside the target, slightly closer; slid sideways (the caller keeps the one hiding about `fraction`)
    size = person_size * rng.uniform(1.0, 1.2)
    feet = y1 + rng.uniform(0, 0.08) * H
    sign = -1.0 if direction == "left" else 1.0
    return [Placement((x0 + x1) / 2 + sign * t * W, feet, size) for t in np.linspace(0.0, 0.6, 13)]


def _person(
    rng: np.random.Generator,
    direction: str,
    fraction: float,
    mask: np.ndarray,
    fr: _Frame,
    other: Identity | None,
    person_size: float,
) -> list[Primitive]:
    """Another pedestrian (same renderer) in front of the target; draws its view, pose and placement."""
    if other is None:
        raise ValueError("a person occluder needs the identity to draw")
    pose = sample_pose(rng, _pick(rng, ["front", "back", "side"]))
    total = max(int(mask.sum()), 1)
    best = None
    for place in _person_placements(rng, direction, fr, other, person_size):  # keep the closest to `fraction`
        cand, _ = person_primitives(other, pose, place)
        err = abs(float((person_mask(cand, (fr.W, fr.H)) & mask).sum()) / total - fraction)
        if best is None or err < best[0]:
            best = (err, cand)
    return best[1]


def _bush(rng: np.random.Generator, fr: _Frame) -> list[Primitive]:
    """Bushes from the bottom, maybe with a bin or box in front; draws the greens, leaf radii and the bin."""
    H, cut, xa, xb = fr.H, fr.cut, fr.xa, fr.xb
    prims: list[Primitive] = []
    prims.append(_rect(0, _pick(rng, GREENS), xa, cut + 12, xb, H + 5))
    for x in range(xa, xb + 1, 12):
        r = _randint(rng, 10, 18)
        prims.append((1, "ellipse", _pick(rng, GREENS), (x - r, cut, x + r, cut + 2 * r), 0))
    if rng.random() < 0.6:  # a bin or a box in front of the bush
        bx = _randint(rng, max(0, xa), max(1, xb - 30))
        prims.append(
            _rect(
                2,
                _clothing_or(rng, [(70, 70, 75), (40, 90, 50), (150, 120, 80)]),
                bx,
                cut + _randint(rng, 0, 20),
                bx + _randint(rng, 20, 45),
                H + 5,
            )
        )
    return prims


def _boxes(rng: np.random.Generator, direction: str, fr: _Frame) -> list[Primitive]:
    """Boxes stacked from the side, ragged inner edge at the cut; draws each box's height, edge and colour."""
    prims: list[Primitive] = []
    y = fr.y0 - _randint(rng, 5, 30)
    while y < fr.H:
        h = _randint(rng, 18, 45)
        edge = fr.cut + _randint(rng, -6, 7)
        a, b = (fr.xa, edge) if direction == "left" else (edge, fr.xb)
        prims.append(
            _rect(
                0,
                _clothing_or(rng, [(150, 120, 80), (120, 95, 60), (90, 90, 95), (60, 100, 60)]),
                a,
                y,
                b,
                y + h,
            )
        )
        y += h
    return prims


def make_occluder(
    kind: str,
    direction: str,
    fraction: float,
    mask: np.ndarray,
    rng: np.random.Generator,
    other: Identity | None = None,
    person_size: float = 200.0,
) -> Occluder:
    """Primitives of an occluder hiding about `fraction` of the silhouette `mask` (H, W) from `direction`.
    `other` is the identity drawn by a "person" occluder; `person_size` the target's body height in pixels."""
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    cut = cut_line(mask, direction, fraction)
    # horizontal span beyond the person (drawn for every kind, left end first)
    xa, xb = max(-5, x0 - _randint(rng, 4, 60)), min(W + 5, x1 + _randint(rng, 4, 60))
    fr = _Frame(H=H, W=W, x0=x0, x1=x1, y0=y0, y1=y1, cut=cut, xa=xa, xb=xb)
    if kind == "vehicle":
        prims = _vehicle(rng, fr)
    elif kind == "pole" and direction == "top":
        prims = _foliage(rng, fr)
    elif kind == "pole":
        prims = _pole(rng, direction, fr)
    elif kind == "board":
        prims = _board(rng, direction, fr)
    elif kind == "person":
        prims = _person(rng, direction, fraction, mask, fr, other, person_size)
    elif kind == "clutter" and direction == "bottom":
        prims = _bush(rng, fr)
    elif kind == "clutter":
        prims = _boxes(rng, direction, fr)
    else:
        raise ValueError(f"unknown occluder type {kind!r}; choose from {OCCLUDER_TYPES}")
    return Occluder(kind=kind, direction=direction, prims=prims)


def sample_occluder_kind(
    rng: np.random.Generator, kinds: tuple[str, ...] = OCCLUDER_TYPES
) -> tuple[str, str]:
    """A (type, direction) pair: types uniform over `kinds`, directions per type (mostly from the bottom)."""
    kind = kinds[int(rng.integers(len(kinds)))]
    dirs = DIRECTIONS[kind]
    direction = list(dirs)[int(rng.choice(len(dirs), p=np.array(list(dirs.values())) / sum(dirs.values())))]
    return kind, direction
