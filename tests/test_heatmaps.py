import pytest
import torch

from occreid.config import PoseConfig
from occreid.data.transforms import flip_keypoints
from occreid.pose.heatmaps import mass_near_peak, part_visibility, render_part_heatmaps
from occreid.pose.schema import COCO_KEYPOINTS, PART_FLIP, PART_GROUPS

IMAGE, FEAT = (384, 128), (24, 8)  # stride 16 both ways
HEAD, TORSO = PART_GROUPS.index("head"), PART_GROUPS.index("torso")
LKNEE = PART_GROUPS.index("left_knee")


def kp(**points):
    """(1, 17, 3) keypoints with the named ones set to (x, y, conf)."""
    out = torch.zeros(1, 17, 3)
    for name, value in points.items():
        out[0, COCO_KEYPOINTS.index(name)] = torch.tensor(value, dtype=torch.float32)
    return out


def random_keypoints(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.zeros(b, 17, 3)
    k[..., 0] = torch.rand(b, 17, generator=g) * IMAGE[1]
    k[..., 1] = torch.rand(b, 17, generator=g) * IMAGE[0]
    k[..., 2] = torch.rand(b, 17, generator=g)
    return k


def test_peak_is_at_the_keypoint_cell():
    # x = 40 px -> u = 2.5 (cell 2), y = 200 px -> v = 12.5 (cell 12); off-centre too:
    # x = 100 -> 6.25 (cell 6).
    for (x, y), cell in [((40.0, 200.0), (12, 2)), ((100.0, 60.0), (3, 6)), ((127.0, 383.0), (23, 7))]:
        maps = render_part_heatmaps(kp(left_knee=(x, y, 1.0)), IMAGE, FEAT, PoseConfig())
        flat = int(maps[0, LKNEE].argmax())
        assert (flat // 8, flat % 8) == cell


def test_values_match_the_formula_at_cell_centre():
    cfg = PoseConfig(sigma=1.0, softmax_temperature=0.1)
    maps = render_part_heatmaps(kp(left_knee=(40.0, 200.0, 1.0)), IMAGE, FEAT, cfg)[0, LKNEE]
    rows = torch.arange(24).view(24, 1) + 0.5
    cols = torch.arange(8).view(1, 8) + 0.5
    logits = torch.exp(-((cols - 2.5) ** 2 + (rows - 12.5) ** 2) / 2) / 0.1
    torch.testing.assert_close(maps, torch.softmax(logits.flatten(), 0).view(24, 8))
    # The documented default: ~91% on the peak cell, ~99% within one cell.
    assert float(maps.max()) == pytest.approx(0.913, abs=2e-3)
    assert float(mass_near_peak(maps[None, None])) == pytest.approx(0.991, abs=2e-3)


def test_boundary_keypoint_splits_between_two_cells():
    # x = 16 px is the border between cells 0 and 1 (pixel i covers [i, i + 1), cell centres at 8 and 24 px).
    maps = render_part_heatmaps(kp(left_knee=(16.0, 200.0, 1.0)), IMAGE, FEAT, PoseConfig())[0, LKNEE]
    assert float(maps[12, 0]) == pytest.approx(float(maps[12, 1]), rel=1e-5)
    assert float(maps[12, 0]) > 0.4


def test_visible_groups_sum_to_one_and_empty_groups_are_zero_by_default():
    k = random_keypoints()
    cfg = PoseConfig()
    maps = render_part_heatmaps(k, IMAGE, FEAT, cfg)
    vis = part_visibility(k, cfg)
    assert maps.shape == (6, 8, 24, 8)
    sums = maps.sum(dim=(-2, -1))
    torch.testing.assert_close(sums[vis], torch.ones(int(vis.sum())))
    assert (sums[~vis] == 0).all()
    assert vis.any() and (~vis).any()  # the sample covers both cases


def test_empty_group_modes():
    k = kp(nose=(64.0, 30.0, 0.9))  # only the head is visible
    zero = render_part_heatmaps(k, IMAGE, FEAT, PoseConfig(empty_group="zero"))
    uniform = render_part_heatmaps(k, IMAGE, FEAT, PoseConfig(empty_group="uniform"))
    assert part_visibility(k, PoseConfig()).tolist() == [[True] + [False] * 7]
    assert (zero[0, 1:] == 0).all()
    torch.testing.assert_close(uniform[0, 1:], torch.full((7, 24, 8), 1 / 192))
    torch.testing.assert_close(zero[0, HEAD], uniform[0, HEAD])


def test_confidence_threshold_drops_keypoints():
    cfg = PoseConfig(conf_threshold=0.3)
    low = kp(left_knee=(40.0, 200.0, 0.29))
    assert not part_visibility(low, cfg)[0, LKNEE]
    assert (render_part_heatmaps(low, IMAGE, FEAT, cfg)[0, LKNEE] == 0).all()
    # A low-confidence keypoint in a group with a confident one does not move the map.
    both = kp(left_shoulder=(30.0, 100.0, 0.9), right_hip=(100.0, 200.0, 0.29))
    only = kp(left_shoulder=(30.0, 100.0, 0.9))
    torch.testing.assert_close(
        render_part_heatmaps(both, IMAGE, FEAT, cfg), render_part_heatmaps(only, IMAGE, FEAT, cfg)
    )
    # ... while at or above the threshold it does.
    kept = kp(left_shoulder=(30.0, 100.0, 0.9), right_hip=(100.0, 200.0, 0.3))
    assert float(render_part_heatmaps(kept, IMAGE, FEAT, cfg)[0, TORSO, 12, 6]) > 10 * float(
        render_part_heatmaps(only, IMAGE, FEAT, cfg)[0, TORSO, 12, 6]
    )


def test_lower_confidence_flattens_the_map():
    cfg = PoseConfig()
    sharp = render_part_heatmaps(kp(left_knee=(40.0, 200.0, 1.0)), IMAGE, FEAT, cfg)
    flat = render_part_heatmaps(kp(left_knee=(40.0, 200.0, 0.5)), IMAGE, FEAT, cfg)
    assert float(flat.max()) < 0.5 * float(sharp.max())
    assert int(flat[0, LKNEE].argmax()) == int(sharp[0, LKNEE].argmax())


def test_merge_max_and_sum():
    # Two torso keypoints in the same place: max equals one keypoint, sum doubles the logit (sharper).
    one = kp(left_shoulder=(40.0, 200.0, 1.0))
    two = kp(left_shoulder=(40.0, 200.0, 1.0), right_shoulder=(40.0, 200.0, 1.0))
    mx = render_part_heatmaps(two, IMAGE, FEAT, PoseConfig(merge="max"))
    sm = render_part_heatmaps(two, IMAGE, FEAT, PoseConfig(merge="sum"))
    torch.testing.assert_close(mx, render_part_heatmaps(one, IMAGE, FEAT, PoseConfig(merge="max")))
    torch.testing.assert_close(
        sm, render_part_heatmaps(one, IMAGE, FEAT, PoseConfig(softmax_temperature=0.05))
    )


@pytest.mark.parametrize("feat", [(24, 8), (8, 4)])
def test_flip_symmetry(feat):
    """Flipping the heatmap equals rendering the keypoints as the training flip transforms them
    (`flip_keypoints`: x -> W - x, left/right swapped) with the part channels swapped by PART_FLIP."""
    k = random_keypoints(b=5, seed=1)
    k[0, :, 2] = 1.0
    cfg = PoseConfig()
    maps = render_part_heatmaps(k, IMAGE, feat, cfg)
    flipped = flip_keypoints(k, IMAGE[1])
    maps_of_flipped = render_part_heatmaps(flipped, IMAGE, feat, cfg)
    torch.testing.assert_close(maps.flip(-1)[:, list(PART_FLIP)], maps_of_flipped, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(part_visibility(k, cfg)[:, list(PART_FLIP)], part_visibility(flipped, cfg))
    # Image side too: a keypoint in pixel column i lands in column W - 1 - i of the flipped image, so its
    # heatmap peak moves to the mirrored feature cell.
    one = kp(left_knee=(40.5, 200.0, 1.0))  # pixel column 40 -> cell 2 of 8 (stride 16)
    rknee = PART_GROUPS.index("right_knee")
    peak = render_part_heatmaps(flip_keypoints(one, IMAGE[1]), IMAGE, feat, cfg)[0, rknee]
    assert int(peak.argmax()) % feat[1] == feat[1] - 1 - int(40.5 * feat[1] / IMAGE[1])


def test_dtype_device_and_bad_input():
    k = random_keypoints(b=2).double()
    assert render_part_heatmaps(k, IMAGE, FEAT, PoseConfig()).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\(B, 17, 3\)"):
        render_part_heatmaps(torch.zeros(2, 16, 3), IMAGE, FEAT, PoseConfig())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_renders_on_the_keypoints_device():
    k = random_keypoints(b=2).cuda()
    assert render_part_heatmaps(k, IMAGE, FEAT, PoseConfig()).device == k.device
