"""What OGFR's agent erases on the teacher's (holistic) view, against random erasing, from SynthOcc's ground
truth (docs/results.md, "What the agent erases").

Each patch token of an image gets one region, the topmost thing it mostly shows (a patch counts as covered by
a box when at least half its pixels are, occreid.data.occlusion.patch_mask):

    erasing     the training transform's random-erasing box (drawn as in training, p = data.erasing_prob)
    occluder    one of SynthOcc's occluder boxes (annotations.json "occluder_boxes")
    person      the person's box (annotations.json "person_box")
    background  everything else

`analyse_agent` reports the fraction of erased tokens in each region for the agent's greedy action (its
action at evaluation), one sampled action (its action in training) and uniform random erasing (the expected
fraction: each token equally likely); how often each position is erased; and how image-dependent the greedy
action is (the number of distinct erased sets, the mean Jaccard overlap of an image's set with the most
frequent positions). `fixed_positions` are the k positions erased most often: the fixed-mask control.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from occreid.data.images import read_image
from occreid.data.occlusion import patch_mask
from occreid.data.transforms import RandomErasing, build_transforms
from occreid.methods.ogfr.fepm import greedy_tokens, sample_tokens

if TYPE_CHECKING:
    from occreid.config import Config
    from occreid.data.records import ImageRecord

REGIONS = ("erasing", "occluder", "person", "background")  # topmost first


def box_mask(boxes: list[list[float]], size: tuple[int, int], scale: tuple[float, float]) -> Tensor:
    """(1, H, W) float mask of the union of [x0, y0, x1, y1) boxes given in pixels scaled by (sy, sx)."""
    mask = torch.zeros(1, *size)
    for x0, y0, x1, y1 in boxes:
        top, bottom = round(y0 * scale[0]), round(y1 * scale[0])
        left, right = round(x0 * scale[1]), round(x1 * scale[1])
        mask[:, top:bottom, left:right] = 1.0
    return mask


def token_regions(masks: dict[str, Tensor], patch_size: int, stride: int) -> Tensor:
    """masks: region -> (B, 1, H, W) pixel masks of the REGIONS but background -> (B, N) int64 index into
    REGIONS of each token's topmost region."""
    first = next(iter(masks.values()))
    regions = torch.full(patch_mask(first, patch_size, stride, 0.5).shape, REGIONS.index("background"))
    for index in reversed(range(len(REGIONS) - 1)):  # lowest first: the topmost overwrites
        covered = patch_mask(masks[REGIONS[index]], patch_size, stride, 0.5)
        regions[covered] = index
    return regions


def erase_with_box(images: Tensor, erasing_prob: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random erasing as in training on each image (B, 3, H, W): (erased images, (B, 1, H, W) box masks)."""
    eraser = RandomErasing(erasing_prob, generator=generator)
    out, masks = images.clone(), torch.zeros(images.shape[0], 1, *images.shape[2:])
    for i in range(images.shape[0]):
        if erasing_prob <= 0 or float(torch.rand((), generator=generator)) >= erasing_prob:
            continue
        box = eraser.get_params(images[i])
        if box is not None:
            top, left, h, w = box
            out[i, :, top : top + h, left : left + w] = 0.0
            masks[i, :, top : top + h, left : left + w] = 1.0
    return out, masks


def holistic_views(
    cfg: Config, root: Path, records: list[ImageRecord], max_images: int, seed: int = 0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Up to `max_images` of SynthOcc's `records` (at `root`) as the teacher sees them in training, resized,
    normalised and randomly erased (data.erasing_prob; no flip or crop, so the stored boxes stay in place):
    (images (B, 3, H, W), region masks for token_regions)."""
    annotations = json.loads((Path(root) / "annotations.json").read_text())
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(records), generator=generator)[:max_images].tolist()
    transform = build_transforms(cfg.data, train=False)
    size = tuple(cfg.data.image_size)
    images, occluders, persons = [], [], []
    for i in chosen:
        img = read_image(records[i].path)
        scale = (size[0] / img.height, size[1] / img.width)
        images.append(transform(img, None)[0])
        note = annotations[Path(records[i].path).relative_to(Path(root).resolve()).as_posix()]
        occluders.append(box_mask(note.get("occluder_boxes", []), size, scale))
        persons.append(box_mask([note["person_box"]] if "person_box" in note else [], size, scale))
    erased, boxes = erase_with_box(torch.stack(images), cfg.data.erasing_prob, generator)
    masks = {"erasing": boxes, "occluder": torch.stack(occluders), "person": torch.stack(persons)}
    return erased, masks


@torch.no_grad()
def agent_scores(method: torch.nn.Module, images: Tensor, batch_size: int = 128) -> Tensor:
    """The agent's scores (B, N) of the teacher's tokens after block ogfr.agent_block, in eval mode."""
    method.eval()
    block = method.cfg.ogfr.agent_block
    out = []
    for chunk in images.split(batch_size):
        x, _ = method.teacher.tokens_until(chunk, block, None)
        out.append(method.agent(x))
    return torch.cat(out)


def region_fractions(index: Tensor, regions: Tensor) -> dict[str, float]:
    """Fraction of the erased tokens index (B, k) in each region, regions (B, N)."""
    picked = regions.gather(1, index).flatten()
    counts = torch.bincount(picked, minlength=len(REGIONS)).double()
    return {name: float(c / counts.sum()) for name, c in zip(REGIONS, counts, strict=True)}


def analyse_agent(
    method: torch.nn.Module, images: Tensor, masks: dict[str, Tensor], seed: int = 0
) -> dict[str, Any]:
    """The analysis of the module docstring for an OGFR `method` with an agent, on holistic `images`
    (B, 3, H, W), already randomly erased as in training, and their region `masks` (see token_regions)."""
    k = method.num_erased
    patch_size, stride = method.teacher.vit.patch_geometry
    regions = token_regions(masks, patch_size, stride)  # (B, N)
    scores = agent_scores(method, images)
    greedy = greedy_tokens(scores, k)
    sampled = sample_tokens(scores, k, torch.Generator().manual_seed(seed))
    random_share = torch.bincount(regions.flatten(), minlength=len(REGIONS)).double() / regions.numel()
    n = regions.shape[1]
    frequency = torch.bincount(greedy.flatten(), minlength=n).double() / len(images)
    fixed = frequency.topk(k).indices
    top = torch.zeros(n, dtype=torch.bool)
    top[fixed] = True
    chosen = torch.zeros_like(regions, dtype=torch.bool).scatter(1, greedy, True)
    jaccard = (chosen & top).sum(1).double() / (chosen | top).sum(1).double()
    sets = Counter(tuple(sorted(row)) for row in greedy.tolist())
    return {
        "images": len(images),
        "k": k,
        "num_patches": n,
        "grid": list(method.teacher.vit.grid_size),
        "greedy": region_fractions(greedy, regions),
        "sampled": region_fractions(sampled, regions),
        "random": {name: float(v) for name, v in zip(REGIONS, random_share, strict=True)},
        "position_frequency": [round(float(f), 4) for f in frequency],
        "fixed_positions": sorted(int(i) for i in fixed),
        "distinct_greedy_sets": len(sets),
        "most_common_set_share": sets.most_common(1)[0][1] / len(images),
        "mean_jaccard_to_fixed": float(jaccard.mean()),
    }
