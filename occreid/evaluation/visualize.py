"""Ranked-list pictures: a query and its top-k gallery matches in one row, green border = same person,
red = wrong person, the distance under each image. Pure PIL, fixed cell size, fast.

Layout of one row (cells are CELL_W x CELL_H images above a LABEL_H label strip, GAP pixels apart):

    [query] GAP GAP [rank 1] [rank 2] ... [rank k]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError

CELL_H, CELL_W = 128, 64  # image size inside a cell
BORDER = 4  # colour frame width
LABEL_H = 14  # text strip under each image
GAP = 4  # between cells; the query is followed by an extra gap
GREEN, RED, GREY, WHITE = (0, 170, 0), (220, 0, 0), (128, 128, 128), (255, 255, 255)


def row_size(topk: int) -> tuple[int, int]:
    """(width, height) in pixels of one ranked-list row with `topk` matches."""
    cell_w, cell_h = CELL_W + 2 * BORDER, CELL_H + 2 * BORDER + LABEL_H
    return (topk + 1) * cell_w + (topk + 2) * GAP, cell_h


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _cell(path: str, colour: tuple[int, int, int], label: str):
    from PIL import Image, ImageDraw

    from occreid.data.images import read_image

    cell = Image.new("RGB", (CELL_W + 2 * BORDER, CELL_H + 2 * BORDER + LABEL_H), WHITE)
    draw = ImageDraw.Draw(cell)
    draw.rectangle([0, 0, CELL_W + 2 * BORDER - 1, CELL_H + 2 * BORDER - 1], fill=colour)
    image = read_image(path).resize((CELL_W, CELL_H), Image.BILINEAR)  # upright, as the model saw it
    cell.paste(image, (BORDER, BORDER))
    draw.text((2, CELL_H + 2 * BORDER + 1), label, fill=(0, 0, 0))
    return cell


def _ranked_row(
    q: int, order: np.ndarray, topk: int, dist_row: np.ndarray, query_paths, gallery_paths, q_pids, g_pids
):
    """The row image, always row_size(topk): with fewer than topk items in `order` the rest stays blank."""
    from PIL import Image

    width, height = row_size(topk)
    row = Image.new("RGB", (width, height), WHITE)
    row.paste(_cell(str(query_paths[q]), GREY, "query"), (GAP, 0))
    x = GAP + CELL_W + 2 * BORDER + 2 * GAP
    for g in order:
        colour = GREEN if g_pids[g] == q_pids[q] else RED
        row.paste(_cell(str(gallery_paths[g]), colour, f"{dist_row[g]:.3f}"), (x, 0))
        x += CELL_W + 2 * BORDER + GAP
    return row


def _select_queries(
    select: str | Sequence[str], num_queries: int, query_paths, ap: np.ndarray | None
) -> list[int]:
    if isinstance(select, str) and select in ("worst", "best"):
        assert ap is not None
        valid = np.flatnonzero(~np.isnan(ap))
        order = valid[np.argsort(ap[valid], kind="stable")]
        if select == "best":
            order = valid[np.argsort(-ap[valid], kind="stable")]
        return [int(i) for i in order[:num_queries]]
    names = [select] if isinstance(select, str) else list(select)
    lookup: dict[str, int] = {}
    for i, p in enumerate(query_paths):
        lookup.setdefault(str(p), i)
        lookup.setdefault(Path(str(p)).name, i)
    chosen = []
    for name in names:
        if name not in lookup:
            raise OccreidError(
                f"query {name!r} is not among the query images (give a file name or full path)"
            )
        chosen.append(lookup[name])
    return chosen


def _ranked_lists(distmat, q_pids, g_pids, q_camids, g_camids, queries, topk, same_camera_filter):
    """For each chosen query: gallery indices of its top-k (stable order), same-pid-same-camera removed."""
    out = []
    for q in queries:
        row = distmat[q]
        order = np.argsort(row, kind="stable")
        if same_camera_filter:
            order = order[~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))]
        out.append(order[:topk])
    return out


def _ranked_rows(
    distmat: Any,
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    topk: int,
    select: str | Sequence[str],
    num_queries: int,
    same_camera_filter: bool,
) -> list[tuple[int, Any]]:
    """(query index, rendered row image) for each chosen query, in selection order."""
    distmat = _to_numpy(distmat)
    q_pids, g_pids = _to_numpy(q_pids), _to_numpy(g_pids)
    q_camids, g_camids = _to_numpy(q_camids), _to_numpy(g_camids)
    if distmat.shape != (len(query_paths), len(gallery_paths)):
        raise OccreidError(
            f"distmat is {distmat.shape} but there are {len(query_paths)} query and {len(gallery_paths)} "
            "gallery paths"
        )
    ap = None
    if isinstance(select, str) and select in ("worst", "best"):
        from occreid.evaluation.rank import evaluate_rank

        ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=1).AP
    queries = _select_queries(select, num_queries, query_paths, ap)
    lists = _ranked_lists(distmat, q_pids, g_pids, q_camids, g_camids, queries, topk, same_camera_filter)
    return [
        (q, _ranked_row(q, order, topk, distmat[q], query_paths, gallery_paths, q_pids, g_pids))
        for q, order in zip(queries, lists)
    ]


def visualize_ranked_results(
    distmat: Any,
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    out_dir: str | Path,
    topk: int = 10,
    select: str | Sequence[str] = "worst",
    num_queries: int = 8,
    same_camera_filter: bool = True,
) -> list[Path]:
    """Write one PNG per chosen query (query + its top-k gallery images) and return the written paths.

    Args:
        distmat: (Q, G) distances; paths, pids and camids as for `evaluate_rank`.
        select: "worst" / "best" (lowest / highest AP among valid queries) or a list of query file names.
        num_queries: how many queries for "worst" / "best".
        same_camera_filter: drop gallery items of the same pid and camera, as the evaluation protocol does.

    Each PNG is `row_size(topk)` pixels: (topk + 1) cells of 72 x 150 (a 64 x 128 image in a 4-px frame over a
    14-px distance label), 4 px apart, 8 px after the query and 4 px before it. When fewer than topk gallery
    items remain (a small gallery, or after the camera filter), the missing cells are left white, so every row
    has the same size. File names: `<rank in selection>_<query file stem>.png`.
    """
    rows = _ranked_rows(
        distmat,
        query_paths,
        gallery_paths,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        topk,
        select,
        num_queries,
        same_camera_filter,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (q, row) in enumerate(rows):
        path = out_dir / f"{n:03d}_{Path(str(query_paths[q])).stem}.png"
        row.save(path)
        written.append(path)
    return written


def ranked_results_grid(
    distmat: Any,
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    out_path: str | Path,
    topk: int = 10,
    select: str | Sequence[str] = "worst",
    num_queries: int = 8,
    same_camera_filter: bool = True,
) -> Path:
    """Like `visualize_ranked_results` but all chosen queries stacked in one PNG (one row each), for
    reports."""
    from PIL import Image

    rows = _ranked_rows(
        distmat,
        query_paths,
        gallery_paths,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        topk,
        select,
        num_queries,
        same_camera_filter,
    )
    width, height = row_size(topk)
    grid = Image.new("RGB", (width, len(rows) * (height + GAP)), WHITE)
    for n, (_, row) in enumerate(rows):
        grid.paste(row, (0, n * (height + GAP)))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_path)
    return out_path
