"""Ranked-list pictures: written, right size, right border colours, query selection."""

import numpy as np
import pytest
from PIL import Image

from occreid.errors import OccreidError
from occreid.evaluation import ranked_results_grid, visualize_ranked_results
from occreid.evaluation.visualize import GREEN, GREY, RED

# The documented layout, written out here rather than read from the module: 64 x 128 images in a 4-px frame
# over a 14-px label; cells 4 px apart, 4 px before the query and 8 px after it, no margin at the right end.
IMAGE_W, IMAGE_H, FRAME, LABEL, SPACING = 64, 128, 4, 14, 4
TILE_W, TILE_H = IMAGE_W + 2 * FRAME, IMAGE_H + 2 * FRAME + LABEL  # 72 x 150


def expected_row_size(topk):
    return SPACING + TILE_W + 2 * SPACING + topk * TILE_W + (topk - 1) * SPACING, TILE_H


@pytest.fixture()
def gallery(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(14):
        p = tmp_path / "img" / f"{i:02d}.jpg"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (60, 30, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    q_paths, g_paths = paths[:2], paths[2:]  # 2 queries, 12 gallery
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids = np.array([1, 1, 2, 3, 4, 5, 2, 6, 7, 8, 9, 1])
    g_cams = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    d = np.tile(np.arange(12, dtype=np.float32) / 10, (2, 1))
    return d, q_paths, g_paths, q_pids, g_pids, q_cams, g_cams


def cell_x(rank):  # left edge of the rank-th gallery cell (1-based); 0 is the query
    return SPACING if rank == 0 else SPACING + TILE_W + 2 * SPACING + (rank - 1) * (TILE_W + SPACING)


def test_layout_arithmetic():
    assert expected_row_size(5) == (460, 150)  # 6 tiles of 72, 1 + 2 + 4 gaps of 4
    assert cell_x(5) + TILE_W == expected_row_size(5)[0]


def test_ranked_list_png(gallery, tmp_path):
    d, qp, gp, q_pids, g_pids, q_cams, g_cams = gallery
    out = visualize_ranked_results(
        d, qp, gp, q_pids, g_pids, q_cams, g_cams, tmp_path / "out", topk=5, select="best"
    )
    assert len(out) == 2 and all(p.is_file() for p in out)
    # query 0 (pid 1) has AP 1 (gallery 0 is removed: same camera; gallery 1 is first); query 1 has AP < 1
    assert out[0].name == "000_00.png"
    image = Image.open(out[0]).convert("RGB")
    assert image.size == expected_row_size(5)
    assert image.getpixel((cell_x(0) + 1, 1)) == GREY  # query frame
    assert image.getpixel((cell_x(1) + 1, 1)) == GREEN  # rank 1: gallery 1, pid 1 (gallery 0 filtered)
    assert image.getpixel((cell_x(2) + 1, 1)) == RED  # rank 2: gallery 2, pid 2


def test_without_camera_filter_and_select_by_name(gallery, tmp_path):
    d, qp, gp, q_pids, g_pids, q_cams, g_cams = gallery
    out = visualize_ranked_results(
        d,
        qp,
        gp,
        q_pids,
        g_pids,
        q_cams,
        g_cams,
        tmp_path / "o",
        topk=3,
        select=["01.jpg"],
        same_camera_filter=False,
    )
    assert [p.name for p in out] == ["000_01.png"]
    image = Image.open(out[0]).convert("RGB")
    assert image.getpixel((cell_x(1) + 1, 1)) == RED  # query 1 is pid 2; gallery 0 is pid 1
    assert image.getpixel((cell_x(3) + 1, 1)) == GREEN  # gallery 2 is pid 2
    with pytest.raises(OccreidError, match="nobody.jpg"):
        visualize_ranked_results(
            d, qp, gp, q_pids, g_pids, q_cams, g_cams, tmp_path / "o", select=["nobody.jpg"]
        )


def test_worst_first_and_grid(gallery, tmp_path):
    d, qp, gp, q_pids, g_pids, q_cams, g_cams = gallery
    out = visualize_ranked_results(d, qp, gp, q_pids, g_pids, q_cams, g_cams, tmp_path / "w", num_queries=1)
    assert [p.name for p in out] == ["000_01.png"]  # query 1 has the lower AP
    assert Image.open(out[0]).size == expected_row_size(10)
    grid = ranked_results_grid(d, qp, gp, q_pids, g_pids, q_cams, g_cams, tmp_path / "grid.png", topk=4)
    width, height = expected_row_size(4)
    assert Image.open(grid).size == (width, 2 * (height + SPACING))


def test_row_keeps_its_size_when_fewer_than_topk_items_remain(gallery, tmp_path):
    d, qp, gp, q_pids, g_pids, q_cams, g_cams = gallery
    # 12 gallery items; query 0 loses gallery 0 to the camera filter -> 11 cells for topk=15
    out = visualize_ranked_results(
        d, qp, gp, q_pids, g_pids, q_cams, g_cams, tmp_path / "few", topk=15, select=["00.jpg"]
    )
    image = Image.open(out[0]).convert("RGB")
    assert image.size == expected_row_size(15)
    assert image.getpixel((cell_x(11) + 1, 1)) in (GREEN, RED)  # the 11th match is drawn
    blank = np.asarray(image)[:, cell_x(12) :]
    assert blank.size and (blank == 255).all()  # the four missing cells are white
