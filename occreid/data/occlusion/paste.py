"""Typed occlusion: where an occluder goes, pasting it onto the holistic view, and the ViT patch mask
(docs/ogfr.md section 1).

From the holistic view x (the usual train transform's output, normalised) `OcclusionAugment` makes the
occluded view x~ of the same image: it draws an occlusion type t from `cfg.types`, a box for it, a source that
can fill that box (`occreid.data.occlusion.sources`), and pastes the occluder's covered pixels into x~:

    none            no occluder: x~ = x, empty mask
    top / bottom    full width, height U(side_range) x H, at the top / bottom edge
    left / right    full height, width U(side_range) x W, at the left / right edge (FED's sizes)
    block           area U(block_area) x H x W, log-uniform height/width ratio in block_ratio, anywhere
    person          another identity, full height, width U(side_range) x W, at the left or right edge

Sources per type: every source for the sides and the block, except that a SynthOcc renderer is only attached
to the sides it knows (a vehicle only from the bottom); for "person" the image source (another identity's
image, its centre columns) and synthocc_person. Held-out types and sources are never drawn in training
(`held_out=False`); `held_out=True` draws only what training never draws, a held-out type (from any source)
or a held-out source (for any type), for test-time views.

Outside the occluder's pixels x~ equals x exactly; `mask` is 1 exactly where x~ took occluder pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from occreid.data.occlusion.sources import SYNTHOCC_PREFIX, OtherImage, draw_occluder, synthocc_sides
from occreid.errors import OccreidError

if TYPE_CHECKING:
    from occreid.config import OcclusionConfig

SIDE_TYPES = ("top", "bottom", "left", "right")
PERSON_SOURCES = ("image", "synthocc_person")


def held_out_for_unseen(unseen: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(held_out_types, held_out_sources) that keep SynthOcc's occluder types `unseen` (e.g. ("person",
    "pole")) out of paired-view training: every renderer of those types, and for "person" the occlusion type
    itself, so that no source (also "image", another identity's centre columns) pastes a person."""
    types = ("person",) if "person" in unseen else ()
    return types, tuple(f"{SYNTHOCC_PREFIX}{t}" for t in sorted(unseen))


def sources_for(occlusion_type: str, sources: Sequence[str]) -> list[str]:
    """The sources among `sources` that can draw `occlusion_type` (none: no source)."""
    if occlusion_type == "none":
        return []
    if occlusion_type == "person":
        return [s for s in sources if s in PERSON_SOURCES]
    if occlusion_type in SIDE_TYPES:
        return [
            s for s in sources if not s.startswith(SYNTHOCC_PREFIX) or occlusion_type in synthocc_sides(s)
        ]
    return list(sources)  # block


@dataclass
class OcclusionDraw:
    """One drawn occlusion: type (index into cfg.types and name), source, box and the occluder itself."""

    type_index: int
    type: str
    source: str | None  # None for "none"
    box: tuple[int, int, int, int]  # top, left, height, width in the view's pixels; (0, 0, 0, 0) for "none"
    rgb: np.ndarray | None  # (h, w, 3) uint8
    alpha: np.ndarray | None  # (h, w) bool: the pixels the occluder covers


def _uniform(bounds: tuple[float, float], generator: torch.Generator | None) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * float(torch.rand((), generator=generator))


def _index(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, n, (), generator=generator))


def _check(cfg: OcclusionConfig) -> None:
    """Cross-field checks, one clear line per problem (the field types are checked by pydantic)."""
    for name in ("types", "sources"):
        values = getattr(cfg, name)
        if not values or len(set(values)) != len(values):
            raise OccreidError(
                f"occlusion.{name} must list at least one entry, each once; got {list(values)}"
            )
    for name, allowed in (("held_out_types", cfg.types), ("held_out_sources", cfg.sources)):
        unknown = [v for v in getattr(cfg, name) if v not in allowed]
        if unknown:
            raise OccreidError(
                f"occlusion.{name}: {unknown} not in occlusion.{name.removeprefix('held_out_')} "
                f"{list(allowed)}"
            )
    if cfg.type_probs is not None and (
        len(cfg.type_probs) != len(cfg.types) or any(p < 0 for p in cfg.type_probs)
    ):
        raise OccreidError(
            f"occlusion.type_probs must give one probability >= 0 per entry of occlusion.types "
            f"({len(cfg.types)}), got {list(cfg.type_probs)}; or null for uniform"
        )
    for name in ("side_range", "block_area"):
        lo, hi = getattr(cfg, name)
        if not 0 < lo <= hi <= 1:
            raise OccreidError(f"occlusion.{name} must be (lo, hi) with 0 < lo <= hi <= 1, got {[lo, hi]}")
    lo, hi = cfg.block_ratio
    if not 0 < lo <= hi:
        raise OccreidError(f"occlusion.block_ratio must be (lo, hi) with 0 < lo <= hi, got {[lo, hi]}")
    if not 0 < cfg.mask_threshold <= 1:
        raise OccreidError(f"occlusion.mask_threshold must be in (0, 1], got {cfg.mask_threshold}")


class OcclusionAugment:
    """Draws occlusions (`sample`) and pastes them onto a view (`paste`); see the module docstring.

        draw = augment.sample(other_image)             # type t = draw.type_index, source, box, occluder
        occluded, mask = augment.paste(x, draw)        # x (3, H, W) normalised -> x~ (3, H, W), (1, H, W)

    `mean`/`std` are the normalisation of x (cfg.data.mean/std), applied to the occluder's pixels too.
    Random numbers come from `generator` (torch's global generator if None, as in DataLoader workers).
    """

    def __init__(
        self,
        cfg: OcclusionConfig,
        image_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        held_out: bool = False,
    ) -> None:
        _check(cfg)
        self.cfg = cfg
        self.size = (int(image_size[0]), int(image_size[1]))
        # x = rgb * scale - shift per channel, the arithmetic of ToTensorNormalize
        std_ = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self._scale = 1.0 / (255.0 * std_)
        self._shift = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1) / std_
        self.render_scale = 256 / self.size[0]  # SynthOcc draws its occluders on a 256-row canvas
        # Held-out views: what training never draws, a held-out type (any source) or source (any type).
        if held_out:
            if not cfg.held_out_types and not cfg.held_out_sources:
                raise OccreidError(
                    "held-out views need occlusion.held_out_types or occlusion.held_out_sources"
                )
            self.sources = {
                t: sources_for(t, cfg.sources if t in cfg.held_out_types else cfg.held_out_sources)
                for t in cfg.types
            }
            types = [t for t in cfg.types if t in cfg.held_out_types or self.sources[t]]
        else:
            types = [t for t in cfg.types if t not in cfg.held_out_types]
            sources = [s for s in cfg.sources if s not in cfg.held_out_sources]
            self.sources = {t: sources_for(t, sources) for t in types}
            for t in types:
                if t != "none" and not self.sources[t]:
                    raise OccreidError(
                        f"occlusion type {t!r} has no source to draw it from: add one of "
                        f"{sources_for(t, cfg.sources) or list(PERSON_SOURCES)} to occlusion.sources (and "
                        f"not to held_out_sources), or hold the type out"
                    )
        self.types = types
        if not self.types:
            raise OccreidError(
                f"occlusion: no type left to draw ({'held-out' if held_out else 'training'} views); "
                "check occlusion.types, held_out_types and held_out_sources"
            )
        probs = [1.0] * len(cfg.types) if cfg.type_probs is None else list(cfg.type_probs)
        weights = torch.tensor([probs[cfg.types.index(t)] for t in self.types], dtype=torch.float64)
        if float(weights.sum()) <= 0:
            raise OccreidError(f"occlusion.type_probs gives probability 0 to every type drawn ({self.types})")
        self.type_probs = weights / weights.sum()

    def sample(self, other_image: OtherImage, generator: torch.Generator | None = None) -> OcclusionDraw:
        """Draw a type, its box and source, and render the occluder (`other_image`: another identity's
        image)."""
        cfg, (H, W) = self.cfg, self.size
        name = self.types[int(torch.multinomial(self.type_probs, 1, generator=generator))]
        index = cfg.types.index(name)
        if name == "none":
            return OcclusionDraw(index, name, None, (0, 0, 0, 0), None, None)
        sources = self.sources[name]
        source = sources[_index(len(sources), generator)]
        if name in ("top", "bottom"):
            h, w = max(1, round(_uniform(cfg.side_range, generator) * H)), W
            top, left, side = (0 if name == "top" else H - h), 0, name
        elif name in ("left", "right", "person"):
            side = name if name != "person" else ("left", "right")[_index(2, generator)]
            h, w = H, max(1, round(_uniform(cfg.side_range, generator) * W))
            top, left = 0, (0 if side == "left" else W - w)
        else:  # block
            area = _uniform(cfg.block_area, generator) * H * W
            ratio = math.exp(
                _uniform((math.log(cfg.block_ratio[0]), math.log(cfg.block_ratio[1])), generator)
            )
            h = min(H, max(1, round(math.sqrt(area * ratio))))
            w = min(W, max(1, round(math.sqrt(area / ratio))))
            top = int(torch.randint(0, H - h + 1, (), generator=generator))
            left = int(torch.randint(0, W - w + 1, (), generator=generator))
            sides = synthocc_sides(source) if source.startswith(SYNTHOCC_PREFIX) else SIDE_TYPES
            side = sides[_index(len(sides), generator)]
        rgb, alpha = draw_occluder(
            source, side, h, w, other_image, self.size, generator, self.render_scale, person=name == "person"
        )
        return OcclusionDraw(index, name, source, (top, left, h, w), rgb, alpha)

    def paste(self, x: torch.Tensor, draw: OcclusionDraw) -> tuple[torch.Tensor, torch.Tensor]:
        """x (3, H, W) -> (x~ (3, H, W), mask (1, H, W) float32): the occluder's covered pixels pasted.

        In numpy, single-threaded like ToTensorNormalize (torch's intra-op pool would fight the trainer for
        cores in a loader worker), and normalised with the same arithmetic.
        """
        out = x.numpy().copy()
        mask = np.zeros((1, *out.shape[1:]), dtype=np.float32)
        if draw.rgb is not None:
            top, left, h, w = draw.box
            occ = draw.rgb.transpose(2, 0, 1).astype(np.float32) * self._scale - self._shift  # (3, h, w)
            np.copyto(out[:, top : top + h, left : left + w], occ, where=draw.alpha[None])
            mask[0, top : top + h, left : left + w] = draw.alpha
        return torch.from_numpy(out), torch.from_numpy(mask)


def patch_mask(occ_mask: torch.Tensor, patch_size: int, stride: int, threshold: float) -> torch.Tensor:
    """Which ViT patches the occluder mostly covers: (B, 1, H, W) pixel mask -> (B, N) bool.

    Patches are those of a conv patch embedding with kernel `patch_size`, stride `stride` and no padding
    (timm's PatchEmbed with that stride, TransReID's overlapping patches for stride < patch_size), in
    row-major order over the (1 + (H - patch_size) // stride) x (1 + (W - patch_size) // stride) grid. A patch
    is covered when the covered fraction of its patch_size^2 pixels is >= `threshold`
    (cfg.occlusion.mask_threshold).
    """
    if occ_mask.dim() != 4 or occ_mask.shape[1] != 1:
        raise ValueError(f"occ_mask must be (B, 1, H, W), got {tuple(occ_mask.shape)}")
    covered = F.avg_pool2d(occ_mask.float(), kernel_size=patch_size, stride=stride)  # (B, 1, gh, gw)
    return (covered >= threshold - 1e-6).flatten(1)  # (B, gh * gw)
