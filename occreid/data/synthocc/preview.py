"""A contact sheet of a generated SynthOcc dataset: one row per identity (query first, then gallery, ordered
by camera), each image enlarged with its occluder boxes (red), visible keypoints (green, with the skeleton)
and hidden keypoints (orange)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from occreid.errors import OccreidError
from occreid.utils.files import atomic_write, picture_format

MARKET_NAME = re.compile(r"([-\d]+)_c(\d)")
SKELETON = (
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 6),
    (5, 11),
    (6, 12),
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
)


def make_contact_sheet(
    root: str | Path,
    out: str | Path | None = None,
    num_ids: int = 6,
    per_row: int = 8,
    scale: int = 3,
    splits: tuple[str, ...] = ("query", "bounding_box_test"),
) -> Path:
    """Draw `num_ids` identities of the dataset at `root` (the first pids found in `splits`) and save a PNG to
    `out` (default `<root>/preview.png`). Returns the PNG path."""
    from PIL import Image, ImageDraw

    from occreid.pose.store import KeypointStore

    root = Path(root)
    ann_path = root / "annotations.json"
    if not ann_path.is_file():
        raise OccreidError(
            f"{ann_path} not found; is {root} a SynthOcc dataset (run `occreid synth --out {root}`)?"
        )
    annotations = json.loads(ann_path.read_text())
    store = KeypointStore.load(root / "keypoints.npz")

    by_pid: dict[int, list[tuple[int, int, str]]] = {}
    for order, split in enumerate(splits):
        for rel in sorted(k for k in annotations if k.startswith(split + "/")):
            pid, cam = map(int, MARKET_NAME.search(Path(rel).name).groups())
            by_pid.setdefault(pid, []).append((order, cam, rel))
    pids = sorted(by_pid)[:num_ids]
    if not pids:
        raise OccreidError(f"{root} has no images in {', '.join(splits)}")

    tw, th = 64 * scale, 128 * scale
    sheet = Image.new("RGB", (per_row * (tw + 4) + 4, len(pids) * (th + 18) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, pid in enumerate(pids):
        items = sorted(by_pid[pid])[:per_row]
        for c, (order, cam, rel) in enumerate(items):
            img = Image.open(root / rel).convert("RGB")
            sx, sy = tw / img.width, th / img.height
            tile = img.resize((tw, th), Image.NEAREST)
            d = ImageDraw.Draw(tile)
            ann = annotations[rel]
            for x0, y0, x1, y1 in ann["occluder_boxes"]:
                d.rectangle((x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1), outline=(255, 0, 0), width=2)
            kp = store[rel]
            for a, b in SKELETON:
                if kp[a, 2] > 0 and kp[b, 2] > 0:
                    d.line(
                        (kp[a, 0] * sx, kp[a, 1] * sy, kp[b, 0] * sx, kp[b, 1] * sy),
                        fill=(0, 230, 0),
                        width=1,
                    )
            for x, y, v in kp:
                colour = (0, 255, 0) if v > 0 else (255, 150, 0)
                d.ellipse((x * sx - 3, y * sy - 3, x * sx + 3, y * sy + 3), fill=colour, outline=(0, 0, 0))
            x, y = 4 + c * (tw + 4), 4 + r * (th + 18)
            sheet.paste(tile, (x, y))
            tag = f"{pid} c{cam} {'Q' if order == 0 else 'G'} {ann['view'][0]}"
            if ann.get("occluder_type") or ann.get("partial"):
                tag += f" {ann.get('occluder_type') or ann.get('partial')}"
            draw.text((x, y + th + 2), tag, fill=(0, 0, 0))
    out = Path(out) if out is not None else root / "preview.png"
    with atomic_write(out) as f:
        sheet.save(f, format=picture_format(out))
    return out
