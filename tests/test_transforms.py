import numpy as np
import pytest
import torch
from PIL import Image

from occreid.config import DataConfig
from occreid.data.transforms import (
    Pad,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    Resize,
    build_transforms,
    flip_keypoints,
)
from occreid.pose.schema import COCO_KEYPOINTS, KEYPOINT_FLIP


def _kpts(seed: int = 0, w: float = 64, h: float = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.zeros((17, 3), np.float32)
    k[:, 0] = rng.uniform(0, w, 17)
    k[:, 1] = rng.uniform(0, h, 17)
    k[:, 2] = rng.uniform(0.3, 1.0, 17)
    return k


def test_resize_scales_keypoints_exactly():
    img = Image.new("RGB", (64, 128))  # W=64, H=128
    kpts = _kpts()
    out, k2 = Resize((384, 128))(img, kpts)
    assert out.size == (128, 384)
    np.testing.assert_allclose(k2[:, 0], kpts[:, 0] * 2.0, rtol=1e-6)
    np.testing.assert_allclose(k2[:, 1], kpts[:, 1] * 3.0, rtol=1e-6)
    np.testing.assert_array_equal(k2[:, 2], kpts[:, 2])
    # A non-uniform downscale: a point at the right/bottom edge maps to the new edge.
    edge = np.zeros((17, 3), np.float32)
    edge[:, 0], edge[:, 1] = 64, 128
    _, k3 = Resize((100, 50))(img, edge)
    np.testing.assert_allclose(k3[:, :2], np.tile([50.0, 100.0], (17, 1)), rtol=1e-6)
    assert kpts[0, 0] != k2[0, 0]  # the input array was not modified in place


def test_pad_then_seeded_crop_offsets_are_exact():
    img = Image.new("RGB", (128, 384))
    kpts = _kpts(1, 128, 384)
    padded, kp = Pad(10)(img, kpts)
    assert padded.size == (148, 404)
    np.testing.assert_allclose(kp[:, :2], kpts[:, :2] + 10, rtol=1e-6)
    for seed in range(5):
        expect_gen = torch.Generator().manual_seed(seed)
        top = int(torch.randint(0, 404 - 384 + 1, (), generator=expect_gen))
        left = int(torch.randint(0, 148 - 128 + 1, (), generator=expect_gen))
        crop = RandomCrop((384, 128), generator=torch.Generator().manual_seed(seed))
        cropped, kc = crop(padded, kp)
        assert cropped.size == (128, 384)
        np.testing.assert_allclose(kc[:, 0], kpts[:, 0] + 10 - left, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(kc[:, 1], kpts[:, 1] + 10 - top, rtol=1e-6, atol=1e-4)
        # The pixels: the crop window of the padded image.
        np.testing.assert_array_equal(
            np.asarray(cropped), np.asarray(padded)[top : top + 384, left : left + 128]
        )


def test_out_of_crop_keypoints_lose_confidence():
    img = Image.new("RGB", (20, 20))
    kpts = np.zeros((17, 3), np.float32)
    kpts[:, 2] = 0.9
    # 20x20 image, crop 10x10: with the generator below the window is at (top, left).
    gen_seed = 3
    g = torch.Generator().manual_seed(gen_seed)
    top, left = int(torch.randint(0, 11, (), generator=g)), int(torch.randint(0, 11, (), generator=g))
    inside = (left + 0.5, top + 0.5)
    kpts[0, :2] = inside  # inside: kept
    kpts[1, :2] = (left + 9.99, top + 9.99)  # still inside [0, 10)
    kpts[2, :2] = (left + 10.0, top + 5)  # x' = 10 == W: outside
    kpts[3, :2] = (left - 0.01, top + 5)  # x' < 0
    kpts[4, :2] = (left + 5, top - 0.5)  # y' < 0
    kpts[5, :2] = (left + 5, top + 10.5)  # y' > H
    _, out = RandomCrop((10, 10), generator=torch.Generator().manual_seed(gen_seed))(img, kpts)
    np.testing.assert_allclose(out[0, :2], [0.5, 0.5], atol=1e-5)
    assert out[0, 2] == pytest.approx(0.9) and out[1, 2] == pytest.approx(0.9)
    assert (out[2:6, 2] == 0).all()
    np.testing.assert_allclose(out[2, :2], [10.0, 5.0], atol=1e-4)  # coordinates are kept


def test_flip_keypoints_maps_x_and_swaps_left_right():
    kpts = _kpts(2)
    flipped = flip_keypoints(kpts, 64)
    left_shoulder, right_shoulder = (
        COCO_KEYPOINTS.index("left_shoulder"),
        COCO_KEYPOINTS.index("right_shoulder"),
    )
    # The new left shoulder is the old right shoulder, mirrored.
    np.testing.assert_allclose(
        flipped[left_shoulder], [64 - kpts[right_shoulder, 0], *kpts[right_shoulder, 1:]]
    )
    np.testing.assert_allclose(flipped[0], [64 - kpts[0, 0], *kpts[0, 1:]])  # the nose stays the nose
    np.testing.assert_allclose(flipped[:, 0], 64 - kpts[list(KEYPOINT_FLIP), 0], rtol=1e-6)
    np.testing.assert_allclose(flip_keypoints(flipped, 64), kpts, rtol=1e-6)
    # Batched torch tensors (test-time flip) give the same numbers.
    batch = torch.from_numpy(np.stack([kpts, kpts]))
    tflip = flip_keypoints(batch, 64)
    assert isinstance(tflip, torch.Tensor) and tflip.shape == (2, 17, 3)
    np.testing.assert_allclose(tflip[1].numpy(), flipped, rtol=1e-6)
    with pytest.raises(ValueError, match="17, 3"):
        flip_keypoints(np.zeros((16, 3)), 64)


def test_random_flip_moves_the_pixel_under_the_keypoint():
    arr = np.zeros((8, 6, 3), np.uint8)
    arr[2, 1] = 255  # pixel column 1, row 2: centre (1.5, 2.5)
    kpts = np.zeros((17, 3), np.float32)
    kpts[COCO_KEYPOINTS.index("left_wrist")] = (1.5, 2.5, 1.0)
    img, out = RandomHorizontalFlip(1.0)(Image.fromarray(arr), kpts)
    flipped = np.asarray(img)
    ys, xs = np.nonzero(flipped[..., 0])
    assert (xs.tolist(), ys.tolist()) == ([4], [2])  # column 6 - 1 - 1
    rw = out[COCO_KEYPOINTS.index("right_wrist")]
    np.testing.assert_allclose(rw, [4.5, 2.5, 1.0])  # 6 - 1.5 = 4.5: the centre of column 4
    assert out[COCO_KEYPOINTS.index("left_wrist"), 2] == 0  # it was the (empty) right wrist
    # p = 0 never flips.
    img0, out0 = RandomHorizontalFlip(0.0)(Image.fromarray(arr), kpts)
    np.testing.assert_array_equal(np.asarray(img0), arr)
    np.testing.assert_array_equal(out0, kpts)


def test_dot_stays_under_keypoint_through_full_train_transform():
    """A bright dot at a keypoint ends up within 1 px of the transformed keypoint (resize, flip, pad, crop).

    The dot is a small Gaussian blob (sigma 1.5 px, peak below 255 so nothing saturates) centred on the centre
    of pixel (cx, cy), i.e. at the continuous point (cx + 0.5, cy + 0.5), so its brightest pixel is well
    defined.
    """
    cfg = DataConfig(image_size=(96, 48), pad=6, flip_prob=0.5, erasing_prob=0.0)
    transform = build_transforms(cfg, train=True)
    h0, w0 = 64, 40  # non-integer scale factors: 1.5 and 1.2
    flips = set()
    for seed in range(24):
        rng = np.random.default_rng(seed)
        cy, cx = int(rng.integers(12, h0 - 12)), int(rng.integers(10, w0 - 10))
        yy, xx = np.mgrid[0:h0, 0:w0]
        blob = 20 + 210 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5**2))
        arr = np.repeat(blob[..., None], 3, axis=2).round().astype(np.uint8)
        kpts = np.zeros((17, 3), np.float32)
        idx = COCO_KEYPOINTS.index("left_knee")
        kpts[idx] = (cx + 0.5, cy + 0.5, 1.0)
        torch.manual_seed(seed)
        image, out = transform(Image.fromarray(arr), kpts)
        assert image.shape == (3, 96, 48) and image.dtype == torch.float32
        visible = np.nonzero(out[:, 2] > 0)[0]
        assert len(visible) == 1
        j = int(visible[0])
        flips.add(j != idx)
        assert j in (idx, KEYPOINT_FLIP[idx])
        x, y = out[j, :2]
        brightest = int(torch.argmax(image.sum(0)))
        by, bx = divmod(brightest, 48)
        # The brightest pixel covers [bx, bx + 1): its distance to the keypoint is within 1 px.
        assert abs(bx + 0.5 - x) <= 1.0 and abs(by + 0.5 - y) <= 1.0, (seed, (bx, by), (x, y))
    assert flips == {True, False}  # both branches were exercised


def test_normalisation_and_test_transform():
    cfg = DataConfig(image_size=(16, 8), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    arr = np.full((32, 16, 3), 255, np.uint8)
    image, kpts = build_transforms(cfg, train=False)(Image.fromarray(arr), None)
    assert kpts is None and image.shape == (3, 16, 8)
    np.testing.assert_allclose(image[:, 0, 0].numpy(), [1.0, 3.0, 1.0], atol=1e-5)
    k = _kpts(4, 16, 32)
    _, k2 = build_transforms(cfg, train=False)(Image.fromarray(arr), k)
    np.testing.assert_allclose(k2[:, :2], k[:, :2] / 2, rtol=1e-6)  # test-time: just the resize


def test_random_erasing_fills_a_box_with_zero_and_keeps_keypoints():
    img = torch.ones(3, 64, 32)
    kpts = _kpts(5, 32, 64)
    erase = RandomErasing(p=1.0, generator=torch.Generator().manual_seed(0))
    areas = []
    for _ in range(50):
        out, k2 = erase(img, kpts)
        np.testing.assert_array_equal(k2, kpts)
        zero = (out == 0).all(0)
        assert ((out == 0) | (out == 1)).all()
        ys, xs = torch.nonzero(zero, as_tuple=True)
        assert len(ys) > 0
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert zero.sum() == h * w  # one axis-aligned box
        areas.append(h * w / (64 * 32))
    assert min(areas) >= 0.015 and max(areas) <= 0.45  # scale (0.02, 0.4), up to rounding
    assert (img == 1).all()  # the input tensor is untouched
    never = RandomErasing(p=0.0)
    assert torch.equal(never(img, kpts)[0], img)


def test_same_torch_seed_same_augmentation():
    cfg = DataConfig(image_size=(32, 16), pad=4)
    transform = build_transforms(cfg, train=True)
    arr = np.random.default_rng(0).integers(0, 255, (40, 20, 3), dtype=np.uint8)
    kpts = _kpts(6, 20, 40)
    torch.manual_seed(7)
    a, ka = transform(Image.fromarray(arr), kpts)
    torch.manual_seed(7)
    b, kb = transform(Image.fromarray(arr), kpts)
    assert torch.equal(a, b) and np.array_equal(ka, kb)
    outs = {transform(Image.fromarray(arr), kpts)[0].sum().item() for _ in range(6)}
    assert len(outs) > 1  # unseeded draws differ


def test_bad_keypoint_shape_is_rejected():
    transform = build_transforms(DataConfig(image_size=(16, 8)), train=False)
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        transform(Image.new("RGB", (8, 16)), np.zeros((17, 2)))
