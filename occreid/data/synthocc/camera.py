"""Per-camera style: a background texture, a preferred walking direction (so views correlate with cameras, as
on a real campus), illumination gain, colour cast, blur and sensor noise. Each camera's style is a pure
function of (dataset seed, camera id).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BACKGROUNDS = ("pavement", "brick", "grass", "indoor", "road")


@dataclass(frozen=True)
class CameraStyle:
    camid: int  # 1-based, as in the file names
    background: str
    view_probs: tuple[float, float, float]  # front, back, side
    gain: float  # global illumination
    cast: tuple[float, float, float]  # per-channel colour multipliers
    blur: float  # Gaussian blur radius in output pixels
    noise: float  # Gaussian noise std in 0..255 units


def camera_style(seed: int, camid: int) -> CameraStyle:
    rng = np.random.default_rng([seed, 7, camid])
    dominant = (camid - 1) % 3  # cameras 1,4 mostly see fronts, 2,5 backs, 3,6 sides
    probs = [0.2, 0.2, 0.2]
    probs[dominant] = 0.6
    return CameraStyle(
        camid=camid,
        background=BACKGROUNDS[(camid - 1 + int(rng.integers(0, 2)) * 3) % len(BACKGROUNDS)],
        view_probs=tuple(probs),  # type: ignore[arg-type]
        gain=float(rng.uniform(0.75, 1.2)),
        cast=tuple(float(v) for v in rng.uniform(0.87, 1.13, size=3)),  # type: ignore[arg-type]
        blur=float(rng.uniform(0.0, 0.7)),
        noise=float(rng.uniform(2.0, 7.0)),
    )


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    """Smooth noise: a coarse random grid bilinearly upsampled to (h, w)."""
    grid = rng.normal(0, amp, size=(cells + 1, cells * w // h + 2))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, grid.shape[1] - 1, w)
    y0, x0 = (
        np.floor(ys).astype(int).clip(0, grid.shape[0] - 2),
        np.floor(xs).astype(int).clip(0, grid.shape[1] - 2),
    )
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g = grid
    return (
        g[y0][:, x0] * (1 - fy) * (1 - fx)
        + g[y0 + 1][:, x0] * fy * (1 - fx)
        + g[y0][:, x0 + 1] * (1 - fy) * fx
        + g[y0 + 1][:, x0 + 1] * fy * fx
    )


@lru_cache(maxsize=32)
def background_texture(seed: int, camid: int, height: int, width: int) -> np.ndarray:
    """A (2*height, 2*width, 3) uint8 texture for a camera; images crop a random window of (height, width)."""
    style = camera_style(seed, camid)
    rng = np.random.default_rng([seed, 8, camid])
    H, W = 2 * height, 2 * width
    yy, xx = np.mgrid[0:H, 0:W]
    base = rng.uniform(-25, 25, size=3)
    if style.background == "pavement":
        col = np.array([150, 148, 140]) + base
        img = np.broadcast_to(col, (H, W, 3)).astype(np.float32).copy()
        tile = int(rng.integers(18, 30))
        img[((yy % tile) < 2) | ((xx % tile) < 2)] *= 0.75
    elif style.background == "brick":
        wall = np.array([150, 80, 60]) + base
        img = np.broadcast_to(wall, (H, W, 3)).astype(np.float32).copy()
        bh = int(rng.integers(8, 12))
        row = yy // bh
        mortar = ((yy % bh) < 2) | (((xx + (row % 2) * 12) % 24) < 2)
        img[mortar] = np.array([190, 185, 175])
        floor = yy > H * rng.uniform(0.55, 0.75)
        img[floor] = np.array([120, 118, 112]) + base * 0.5
    elif style.background == "grass":
        img = np.broadcast_to(np.array([80, 130, 60]) + base * 0.6, (H, W, 3)).astype(np.float32).copy()
        path = np.abs(xx - W * rng.uniform(0.3, 0.7) - (yy - H) * rng.uniform(-0.3, 0.3)) < W * 0.3
        img[path] = np.array([170, 155, 120]) + base * 0.4
    elif style.background == "indoor":
        img = np.broadcast_to(np.array([200, 195, 180]) + base, (H, W, 3)).astype(np.float32).copy()
        floor = yy > H * rng.uniform(0.5, 0.7)
        img[floor] = np.array([110, 90, 70]) + base
        img[floor & ((xx // 16 + yy // 16) % 2 == 0)] *= 0.9
        for _ in range(4):  # doors and windows
            x0, y0 = int(rng.integers(0, W - 20)), int(rng.integers(0, H // 3))
            img[y0 : y0 + int(rng.integers(30, 90)), x0 : x0 + int(rng.integers(15, 40))] = rng.uniform(
                40, 200, 3
            )
    else:  # road
        img = np.broadcast_to(np.array([85, 85, 90]) + base * 0.5, (H, W, 3)).astype(np.float32).copy()
        for x in rng.integers(0, W, size=2):
            img[(np.abs(xx - x) < 3) & ((yy // 30) % 2 == 0)] = np.array([220, 215, 200])
    img += _lowfreq(rng, H, W, 6, 12.0)[..., None]
    img += rng.normal(0, 4, size=(H, W, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def apply_style(image: np.ndarray, style: CameraStyle, rng: np.random.Generator) -> np.ndarray:
    """Camera illumination, colour cast and noise on an (H, W, 3) uint8 image (blur is done with PIL)."""
    gain = style.gain * float(rng.uniform(0.93, 1.07))
    out = image.astype(np.float32) * (gain * np.asarray(style.cast, np.float32))
    out += rng.normal(0.0, style.noise, size=out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
