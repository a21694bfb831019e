"""Procedural person drawing: a 3-D stick skeleton in a walking pose, turned to a view, projected
orthographically and painted back to front with PIL's ImageDraw (limbs as thick polylines, torso and skirt as
polygons, head and hands as ellipses). The same projection gives the 17 COCO keypoints, so they are exact by
construction.

Body frame (units of body height, before `Identity.height` scaling): x to the person's LEFT, y up from the
ground, z forward. A yaw of theta turns the body; the camera looks at it orthographically:

    u = x cos(theta) + z sin(theta)        (image x, to the right)
    c = -x sin(theta) + z cos(theta)       (depth towards the camera; larger c is painted later)   (1)

so theta = 0 is a front view (the person's left appears on the image right), 180 a back view and +-90 side
views (theta = +90: walking to the image right, right side towards the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import ImageDraw

from occreid.data.synthocc.identity import BAG, HAIR, LOWER, SHOES, SKIN, UPPER, Identity
from occreid.pose.schema import COCO_KEYPOINTS

RGB = tuple[int, int, int]

# Body proportions (fractions of body height). Keypoints sit inside the drawn shapes by construction.
HIP_Y, SHOULDER_Y, NECK_Y, HEAD_Y = 0.52, 0.815, 0.84, 0.915
HEAD_RX, HEAD_RY = 0.056, 0.068
THIGH, SHIN, UPPER_ARM, FOREARM = 0.245, 0.245, 0.185, 0.165
SHOULDER_HALF, HIP_HALF, TORSO_DEPTH = 0.105, 0.072, 0.11
ARM_WIDTH, LEG_WIDTH = 0.042, 0.062
FACE = {  # body-frame positions relative to the head centre
    "nose": (0.0, -0.004, 0.048),
    "left_eye": (0.022, 0.012, 0.042),
    "right_eye": (-0.022, 0.012, 0.042),
    "left_ear": (0.048, 0.002, -0.004),
    "right_ear": (-0.048, 0.002, -0.004),
}

VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class Pose:
    yaw: float  # degrees, see (1)
    phase: float  # gait phase in radians
    stride: float  # thigh swing amplitude in radians (0: standing)

    @property
    def view(self) -> str:
        a = abs(((self.yaw + 180.0) % 360.0) - 180.0)
        return "front" if a < 45 else "back" if a > 135 else "side"


def sample_pose(rng: np.random.Generator, view: str) -> Pose:
    """A walking (85%) or standing pose seen from `view` with +-20 degrees of yaw jitter."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    centre = {"front": 0.0, "back": 180.0, "side": 90.0 if rng.random() < 0.5 else -90.0}[view]
    stride = float(rng.uniform(0.25, 0.45)) if rng.random() < 0.85 else float(rng.uniform(0.0, 0.08))
    return Pose(
        yaw=centre + float(rng.uniform(-20, 20)), phase=float(rng.uniform(0, 2 * math.pi)), stride=stride
    )


def skeleton(identity: Identity, pose: Pose) -> dict[str, np.ndarray]:
    """3-D joint positions (body frame, units of body height) for a gait phase. Keys: the COCO names plus
    'neck' and 'head'. The stance foot touches y = 0.03."""
    w, phi, a = identity.build, pose.phase, pose.stride
    j: dict[str, np.ndarray] = {}
    bob = 0.008 * math.cos(2 * phi) * (a / 0.35)
    for side, s, leg_phase in (("left", 1.0, phi), ("right", -1.0, phi + math.pi)):
        thigh = a * math.sin(leg_phase)
        knee_bend = 0.05 + (a / 0.35) * 0.55 * max(0.0, math.sin(leg_phase + 0.9)) ** 2
        shin = thigh - knee_bend
        hip = np.array([s * HIP_HALF * w, HIP_Y + bob, 0.0])
        knee = hip + THIGH * np.array([0.0, -math.cos(thigh), math.sin(thigh)])
        ankle = knee + SHIN * np.array([0.0, -math.cos(shin), math.sin(shin)])
        arm = -0.9 * a * math.sin(leg_phase)
        shoulder = np.array([s * SHOULDER_HALF * w, SHOULDER_Y + bob, 0.0])
        elbow = shoulder + UPPER_ARM * np.array([s * 0.12, -math.cos(arm), math.sin(arm)])
        fore = arm + 0.25 + 0.3 * max(0.0, math.sin(-leg_phase))
        wrist = elbow + FOREARM * np.array([s * 0.12, -math.cos(fore), math.sin(fore)])
        j.update(
            {
                f"{side}_hip": hip,
                f"{side}_knee": knee,
                f"{side}_ankle": ankle,
                f"{side}_shoulder": shoulder,
                f"{side}_elbow": elbow,
                f"{side}_wrist": wrist,
            }
        )
    ground = min(j["left_ankle"][1], j["right_ankle"][1]) - 0.03
    for k in j:
        j[k] = j[k] - np.array([0.0, ground, 0.0])
    j["neck"] = np.array([0.0, NECK_Y + bob - ground, 0.0])
    j["head"] = np.array([0.0, HEAD_Y + bob - ground, 0.0])
    for name, offset in FACE.items():
        j[name] = j["head"] + np.array(offset)
    return j


@dataclass
class Placement:
    """Where the person stands on the canvas: feet at (cx, feet_y), body height `size` pixels."""

    cx: float
    feet_y: float
    size: float


# A primitive is (depth, kind, colour, geometry, width): kind in line/polygon/ellipse; painted in depth order.
Primitive = tuple[float, str, RGB, tuple, int]


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(max(0, min(255, round(v * factor)))) for v in colour)  # type: ignore[return-value]


class _Projector:
    def __init__(self, pose: Pose, place: Placement, scale: float):
        t = math.radians(pose.yaw)
        self.cos, self.sin = math.cos(t), math.sin(t)
        self.place, self.s = place, place.size * scale

    def uv(self, p: np.ndarray) -> tuple[float, float]:
        u = p[0] * self.cos + p[2] * self.sin
        return (self.place.cx + u * self.s, self.place.feet_y - p[1] * self.s)

    def depth(self, p: np.ndarray) -> float:
        return float(-p[0] * self.sin + p[2] * self.cos)

    def width(self, half_lateral: float, half_depth: float) -> float:
        """Projected half-width (pixels) of a body slab with these lateral and depth half-extents."""
        return math.hypot(half_lateral * self.cos, half_depth * self.sin) * self.s


TORSO_LAYER = 0.02  # paint depth of the torso; clothing details and straps sit just above it


@dataclass
class _Figure:
    """A person being drawn: identity, projection, joints `j` (3-D), `P` (pixels), `D` (depth), primitives."""

    identity: Identity
    pr: _Projector
    j: dict[str, np.ndarray]
    P: dict[str, tuple[float, float]]
    D: dict[str, float]
    prims: list[Primitive] = field(default_factory=list)

    @property
    def px(self) -> float:
        """Pixels per body-height unit."""
        return self.pr.s

    @property
    def facing(self) -> float:
        """> 0: front towards the camera."""
        return self.pr.cos

    def line(self, depth: float, colour: RGB, pts, width: float) -> None:
        """A thick polyline through `pts`."""
        self.prims.append((depth, "line", colour, tuple(pts), max(1, int(round(width)))))

    def disc(self, depth: float, colour: RGB, centre, rx: float, ry: float | None = None) -> None:
        """An ellipse with radii `rx`, `ry` (a circle without `ry`) around `centre`."""
        ry = rx if ry is None else ry
        self.prims.append(
            (depth, "ellipse", colour, (centre[0] - rx, centre[1] - ry, centre[0] + rx, centre[1] + ry), 0)
        )

    def poly(self, depth: float, colour: RGB, pts) -> None:
        """A filled polygon."""
        self.prims.append((depth, "polygon", colour, tuple(pts), 0))


@dataclass(frozen=True)
class _Torso:
    """The torso's outline in pixels: shoulder and hip midpoints, hip half-width, top and bottom rows."""

    mid_sh: tuple[float, float]
    mid_hip: tuple[float, float]
    hw: float
    top_y: float
    bot_y: float
    outline: tuple[tuple[float, float], ...]  # top left, top right, bottom right, bottom left

    def band(self, y0: float, y1: float) -> tuple[tuple[float, float], ...]:
        """The torso polygon between two heights (fractions from top to bottom)."""
        (a0, b0), (a1, b1) = self._at(y0), self._at(y1)
        return (a0, b0, b1, a1)

    def _at(self, t: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """The torso's left and right edge points at height `t` (a fraction from top to bottom)."""
        torso, top_y, bot_y = self.outline, self.top_y, self.bot_y
        ya = top_y + t * (bot_y - top_y)
        xl = torso[0][0] + t * (torso[3][0] - torso[0][0])
        xr = torso[1][0] + t * (torso[2][0] - torso[1][0])
        return (xl, ya), (xr, ya)


def _legs(fig: _Figure) -> None:
    """Legs: thighs and shins as thick lines with round joints, shoes as ellipses pointing forward."""
    identity, P, D, px, pr = fig.identity, fig.P, fig.D, fig.px, fig.pr
    skin, lower, shoes = SKIN[identity.skin], LOWER[identity.lower], SHOES[identity.shoes]
    leg_w = LEG_WIDTH * identity.build**0.5 * px
    for side in ("left", "right"):
        far = D[f"{side}_hip"] < -0.01
        f = 0.85 if far else 1.0
        d = (D[f"{side}_hip"] + D[f"{side}_knee"] + D[f"{side}_ankle"]) / 3 - 0.02
        hip, knee, ankle = P[f"{side}_hip"], P[f"{side}_knee"], P[f"{side}_ankle"]
        thigh_c = _shade(
            lower if identity.lower_type == "trousers" or identity.lower_type == "shorts" else skin, f
        )
        shin_c = _shade(lower if identity.lower_type == "trousers" else skin, f)
        if identity.lower_type == "shorts":  # shorts end above the knee
            mid = (hip[0] + 0.75 * (knee[0] - hip[0]), hip[1] + 0.75 * (knee[1] - hip[1]))
            fig.line(d, _shade(skin, f), (mid, knee, ankle), leg_w * 0.8)
            fig.disc(d, _shade(skin, f), knee, leg_w * 0.4)
            fig.line(d + 1e-4, thigh_c, (hip, mid), leg_w * 1.1)
        else:
            fig.line(d, thigh_c, (hip, knee), leg_w)
            fig.disc(d, thigh_c, knee, leg_w * 0.5)
            fig.line(d, shin_c, (knee, ankle), leg_w * (0.95 if identity.lower_type == "trousers" else 0.75))
        toe = (ankle[0] + 0.05 * px * pr.sin, ankle[1] + 0.012 * px)
        foot_rx = max(0.03 * px * abs(pr.sin), 0.022 * px) + 0.01 * px
        fig.disc(
            d + 2e-4, _shade(shoes, f), ((ankle[0] + toe[0]) / 2, ankle[1] + 0.006 * px), foot_rx, 0.019 * px
        )


def _torso_outline(fig: _Figure) -> _Torso:
    """Torso geometry (draws nothing): a slab from the shoulders to just below the hips."""
    identity, P, px, pr = fig.identity, fig.P, fig.px, fig.pr
    mid_sh = (
        (P["left_shoulder"][0] + P["right_shoulder"][0]) / 2,
        (P["left_shoulder"][1] + P["right_shoulder"][1]) / 2,
    )
    mid_hip = ((P["left_hip"][0] + P["right_hip"][0]) / 2, (P["left_hip"][1] + P["right_hip"][1]) / 2)
    # the slab's projected half-widths come from its lateral and depth extents
    sw = pr.width(SHOULDER_HALF * identity.build + 0.02, TORSO_DEPTH * 0.5)
    hw = pr.width(HIP_HALF * identity.build + 0.03, TORSO_DEPTH * 0.45)
    top_y, bot_y = mid_sh[1] - 0.015 * px, mid_hip[1] + 0.025 * px
    outline = (
        (mid_sh[0] - sw, top_y),
        (mid_sh[0] + sw, top_y),
        (mid_hip[0] + hw, bot_y),
        (mid_hip[0] - hw, bot_y),
    )
    return _Torso(mid_sh=mid_sh, mid_hip=mid_hip, hw=hw, top_y=top_y, bot_y=bot_y, outline=outline)


def _skirt(fig: _Figure, t: _Torso) -> None:
    """Skirt: a trapezoid from the hips to below the knees, over the thighs."""
    P, px, mid_hip, hw = fig.P, fig.px, t.mid_hip, t.hw
    knee_y = (P["left_knee"][1] + P["right_knee"][1]) / 2 + 0.02 * px
    skirt_half = hw + 0.04 * px
    fig.poly(
        TORSO_LAYER - 1e-3,
        LOWER[fig.identity.lower],
        (
            (mid_hip[0] - hw, mid_hip[1] - 0.02 * px),
            (mid_hip[0] + hw, mid_hip[1] - 0.02 * px),
            (mid_hip[0] + skirt_half, knee_y),
            (mid_hip[0] - skirt_half, knee_y),
        ),
    )


def _shirt(fig: _Figure, t: _Torso) -> None:
    """Upper garment: the torso polygon and its pattern (stripes, a two-tone lower half or a chest logo)."""
    identity, px, facing = fig.identity, fig.px, fig.facing
    second = UPPER[identity.upper_second]
    fig.poly(TORSO_LAYER, UPPER[identity.upper], t.outline)
    if identity.upper_pattern == "stripes":
        for y in (0.12, 0.37, 0.62):
            fig.poly(TORSO_LAYER + 1e-4, second, t.band(y, y + 0.12))
    elif identity.upper_pattern == "two_tone":
        fig.poly(TORSO_LAYER + 1e-4, second, t.band(0.5, 1.0))
    elif identity.upper_pattern == "logo" and facing > 0.35:  # printed on the chest: only seen from the front
        cx = t.mid_sh[0] + (t.mid_hip[0] - t.mid_sh[0]) * 0.3
        cy = t.top_y + 0.33 * (t.bot_y - t.top_y)
        r = 0.032 * px * min(1.0, facing + 0.2)
        if identity.logo_shape == "circle":
            fig.prims.append((TORSO_LAYER + 2e-4, "ellipse", second, (cx - r, cy - r, cx + r, cy + r), 0))
        else:
            fig.poly(
                TORSO_LAYER + 2e-4,
                second,
                ((cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)),
            )


def _arms(fig: _Figure) -> None:
    """Arms: sleeve colour on the upper arm (and forearm if long sleeves), skin elsewhere, hands as discs."""
    identity, P, D = fig.identity, fig.P, fig.D
    skin, upper = SKIN[identity.skin], UPPER[identity.upper]
    arm_w = ARM_WIDTH * identity.build**0.5 * fig.px
    for side in ("left", "right"):
        dsh = D[f"{side}_shoulder"]
        f = 0.85 if dsh < -0.02 else 1.0
        d = (dsh + D[f"{side}_elbow"] + D[f"{side}_wrist"]) / 3 + (
            0.03 if dsh > 0.02 else -0.03 if dsh < -0.02 else 0.0
        )
        sh, el, wr = P[f"{side}_shoulder"], P[f"{side}_elbow"], P[f"{side}_wrist"]
        sleeve_c = _shade(upper, f)
        if identity.sleeve == "long":
            fig.line(d, sleeve_c, (sh, el, wr), arm_w)
            fig.disc(d, sleeve_c, el, arm_w * 0.5)
        else:
            mid = (sh[0] + 0.55 * (el[0] - sh[0]), sh[1] + 0.55 * (el[1] - sh[1]))
            fig.line(d, _shade(skin, f), (mid, el, wr), arm_w * 0.8)
            fig.disc(d, _shade(skin, f), el, arm_w * 0.4)
            fig.line(d + 1e-4, sleeve_c, (sh, mid), arm_w * 1.15)
        fig.disc(d + 1e-4, _shade(sleeve_c, 1.0), sh, arm_w * 0.55)
        fig.disc(d + 2e-4, _shade(skin, f), wr, arm_w * 0.55)


def _backpack(fig: _Figure, t: _Torso) -> None:
    """Backpack: a box behind the back, with straps over the chest when seen from the front."""
    identity, pr, px = fig.identity, fig.pr, fig.px
    bag_colour = BAG[identity.bag_colour]
    centre = np.array([0.0, fig.j["neck"][1] - 0.14, -TORSO_DEPTH * 0.5 - 0.04])
    c = pr.uv(centre)
    bw, bh = pr.width(0.075 * identity.build, 0.045), 0.1 * px
    fig.poly(
        pr.depth(centre),
        bag_colour,
        ((c[0] - bw, c[1] - bh), (c[0] + bw, c[1] - bh), (c[0] + bw, c[1] + bh), (c[0] - bw, c[1] + bh)),
    )
    if fig.facing > 0.3:  # straps over the chest
        for side in ("left", "right"):
            sh = fig.P[f"{side}_shoulder"]
            fig.line(
                TORSO_LAYER + 3e-4,
                bag_colour,
                (sh, (sh[0] + (t.mid_hip[0] - sh[0]) * 0.25, t.top_y + 0.45 * (t.bot_y - t.top_y))),
                0.018 * px,
            )


def _shoulder_bag(fig: _Figure) -> None:
    """Shoulder bag: a box at one hip and a strap from the opposite shoulder."""
    identity, pr, px = fig.identity, fig.pr, fig.px
    bag_colour = BAG[identity.bag_colour]
    s = 1.0 if identity.bag_side == "left" else -1.0
    centre = np.array([s * (HIP_HALF * identity.build + 0.06), fig.j["left_hip"][1] + 0.02, 0.01])
    c, d = pr.uv(centre), pr.depth(centre)
    bw, bh = pr.width(0.04, 0.065), 0.06 * px
    strap_from = fig.P["right_shoulder" if s > 0 else "left_shoulder"]
    fig.line(TORSO_LAYER + 3e-4, _shade(bag_colour, 0.9), (strap_from, (c[0], c[1] - bh)), 0.014 * px)
    fig.poly(
        d + 0.05 * (1 if d >= -0.02 else -1),
        bag_colour,
        ((c[0] - bw, c[1] - bh), (c[0] + bw, c[1] - bh), (c[0] + bw, c[1] + bh), (c[0] - bw, c[1] + bh)),
    )


def _head(fig: _Figure) -> None:
    """Head: hair behind/over the skin disc depending on the view; long hair falls to the shoulders."""
    identity, P, px, pr, facing = fig.identity, fig.P, fig.px, fig.pr, fig.facing
    skin, hair = SKIN[identity.skin], HAIR[identity.hair]
    head = P["head"]
    hrx = pr.width(HEAD_RX, HEAD_RX * 1.05)
    hry = HEAD_RY * px
    hd = 0.5
    fwd_u = pr.sin  # image-x direction of the person's forward vector
    if identity.hair_style == "long":
        ld = -0.04 * facing + 0.01
        top = head[1] - hry * 0.6
        bottom = P["left_shoulder"][1] + 0.03 * px
        off = -fwd_u * hrx * 0.35
        fig.poly(
            hd + ld if facing < 0 else -0.2,
            hair,
            (
                (head[0] - hrx * 1.05 + off, top),
                (head[0] + hrx * 1.05 + off, top),
                (head[0] + hrx * 1.1 + off, bottom),
                (head[0] - hrx * 1.1 + off, bottom),
            ),
        )
    if facing < -0.2:  # seen from behind: the head is mostly hair
        fig.disc(hd, skin, head, hrx, hry)
        fig.disc(hd + 1e-4, hair, (head[0], head[1] - hry * 0.08), hrx * 1.03, hry * 0.98)
    else:
        fig.disc(hd, hair, (head[0] - fwd_u * hrx * 0.25, head[1] - hry * 0.2), hrx * 1.05, hry * 0.9)
        fig.disc(hd + 1e-4, skin, (head[0] + fwd_u * hrx * 0.1, head[1] + hry * 0.08), hrx * 0.95, hry * 0.9)
        fig.disc(hd + 2e-4, hair, (head[0] - fwd_u * hrx * 0.2, head[1] - hry * 0.6), hrx * 0.9, hry * 0.4)


def person_primitives(identity: Identity, pose: Pose, place: Placement) -> tuple[list[Primitive], np.ndarray]:
    """Paintable primitives of one person and the (17, 2) COCO keypoints in canvas pixel coordinates (PIL's
    convention: integer coordinates are pixel centres)."""
    # The parts are sorted by depth with a stable sort: equal depths keep the order of the helpers below.
    j = skeleton(identity, pose)
    pr = _Projector(pose, place, identity.height)
    P = {k: pr.uv(v) for k, v in j.items()}
    D = {k: pr.depth(v) for k, v in j.items()}
    fig = _Figure(identity=identity, pr=pr, j=j, P=P, D=D)
    _legs(fig)
    torso = _torso_outline(fig)
    if identity.lower_type == "skirt":
        _skirt(fig, torso)
    _shirt(fig, torso)
    _arms(fig)
    if identity.bag == "backpack":
        _backpack(fig, torso)
    elif identity.bag == "shoulder_bag":
        _shoulder_bag(fig)
    _head(fig)
    fig.prims.sort(key=lambda p: p[0])
    keypoints = np.array([P[name] for name in COCO_KEYPOINTS], dtype=np.float64)
    return fig.prims, keypoints


def paint(draw: ImageDraw.ImageDraw, prims: list[Primitive], fill: int | RGB | None = None) -> None:
    """Paint primitives in order; `fill` overrides every colour (e.g. 255 to paint a mask)."""
    for _, kind, colour, geom, width in prims:
        c = colour if fill is None else fill
        if kind == "line":
            draw.line(geom, fill=c, width=width, joint="curve")
            r = width / 2
            for x, y in (geom[0], geom[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=c)
        elif kind == "polygon":
            draw.polygon(geom, fill=c)
        elif kind == "ellipse":
            draw.ellipse(geom, fill=c)
        else:  # pragma: no cover - internal
            raise ValueError(kind)
