"""FeatureExtractor input kinds, flip averaging, and the feature file round trip."""

import numpy as np
import pytest
import torch
from PIL import Image

from occreid.errors import OccreidError
from occreid.evaluation import compute_distance
from occreid.inference.extractor import FeatureExtractor, load_features, save_features


def tiny_model():
    # position-dependent pooling so a horizontal flip changes the features: (B, 3, H, W) -> (B, 12)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((2, 2)), torch.nn.Flatten())


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40 + 4 * i, 20 + 2 * i, 3), dtype=np.uint8) for i in range(5)]
    paths = []
    for i, a in enumerate(arrays):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(a).save(p)
        paths.append(str(p))
    return arrays, paths


def manual(arrays, size=(32, 16)):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    batch = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.fromarray(a).resize(size[::-1], Image.BICUBIC)).copy())
            .permute(2, 0, 1)
            .float()
            / 255
            for a in arrays
        ]
    )
    batch = (batch - mean) / std
    return batch


def test_every_input_kind_gives_the_same_features(images):
    arrays, paths = images
    ex = FeatureExtractor(tiny_model(), image_size=(32, 16), batch_size=2, device="cpu", progress=False)
    from_paths = ex(paths)
    assert (
        from_paths.shape == (5, 12) and from_paths.dtype == torch.float32 and from_paths.device.type == "cpu"
    )
    expected = tiny_model()(manual(arrays))
    torch.testing.assert_close(from_paths, expected)
    torch.testing.assert_close(ex([Image.fromarray(a) for a in arrays]), expected)
    torch.testing.assert_close(ex(arrays), expected)
    torch.testing.assert_close(ex(manual(arrays)), expected)
    # a single image of each kind is a batch of one
    torch.testing.assert_close(ex(paths[0]), expected[:1])
    torch.testing.assert_close(ex(Image.fromarray(arrays[1])), expected[1:2])
    torch.testing.assert_close(ex(arrays[2]), expected[2:3])


def test_flip_average_is_the_mean_of_both(images):
    arrays, _ = images
    batch = manual(arrays)
    plain = FeatureExtractor(tiny_model(), image_size=(32, 16), device="cpu", progress=False)(batch)
    flipped = FeatureExtractor(tiny_model(), image_size=(32, 16), device="cpu", progress=False)(
        torch.flip(batch, dims=[3])
    )
    averaged = FeatureExtractor(tiny_model(), image_size=(32, 16), device="cpu", flip=True, progress=False)(
        batch
    )
    torch.testing.assert_close(averaged, (plain + flipped) / 2)
    assert (plain - flipped).abs().max() > 1e-3  # the flip matters for this model


def test_runs_without_grad_and_in_eval_mode(images):
    arrays, _ = images
    model = torch.nn.Sequential(tiny_model(), torch.nn.Dropout(0.9))
    ex = FeatureExtractor(model, image_size=(32, 16), device="cpu", progress=False)
    a, b = ex(arrays), ex(arrays)
    torch.testing.assert_close(a, b)  # dropout is off
    assert not a.requires_grad


def test_a_cpu_conv_model_runs_channels_last_with_the_same_features(images):
    arrays, _ = images
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), tiny_model())
    expected = conv(manual(arrays))
    seen = []
    conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    ex = FeatureExtractor(conv, image_size=(32, 16), batch_size=2, device="cpu", progress=False)
    torch.testing.assert_close(ex(arrays), expected, rtol=1e-5, atol=1e-6)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    assert not seen[0].is_contiguous()  # NHWC, not the NCHW default


def test_bad_inputs(tmp_path):
    ex = FeatureExtractor(tiny_model(), image_size=(32, 16), device="cpu", progress=False)
    with pytest.raises(OccreidError, match="missing.jpg"):
        ex([str(tmp_path / "missing.jpg")])
    with pytest.raises(OccreidError, match="HxWx3"):
        ex([np.zeros((4, 4), np.uint8)])
    with pytest.raises(OccreidError, match=r"\(B, D\)"):
        FeatureExtractor(torch.nn.Identity(), image_size=(8, 4), device="cpu", progress=False)(
            torch.zeros(2, 3, 8, 4)
        )


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_feature_file_round_trip(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    feats = torch.randn(4, 6)
    path = save_features(
        tmp_path / f"f{suffix}", feats, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], [1, 2, 2, 3], [0, 1, 0, 1]
    )
    out = load_features(path)
    np.testing.assert_array_equal(out["features"], feats.numpy())
    assert out["paths"] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    np.testing.assert_array_equal(out["pids"], [1, 2, 2, 3])
    np.testing.assert_array_equal(out["camids"], [0, 1, 0, 1])
    with pytest.raises(OccreidError, match="pids has 2"):
        save_features(tmp_path / "bad.npz", feats, pids=[1, 2])
    with pytest.raises(OccreidError, match="not found"):
        load_features(tmp_path / "nope.npz")


def test_compute_distance_metrics():
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((7, 8)).astype(np.float32)
    euc = ((q[:, None] - g[None]) ** 2).sum(-1)
    np.testing.assert_allclose(compute_distance(q, g, chunk_size=2), euc, rtol=1e-5, atol=1e-5)
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(compute_distance(q, g, "cosine"), 1 - qn @ gn.T, atol=1e-6)
    np.testing.assert_allclose(compute_distance(q, g, normalize=True), 2 - 2 * qn @ gn.T, atol=1e-5)
    out = compute_distance(torch.from_numpy(q), torch.from_numpy(g))
    assert isinstance(out, torch.Tensor) and out.shape == (5, 7)
    with pytest.raises(OccreidError, match="8-d"):
        compute_distance(q, g[:, :4])


def test_from_checkpoint_uses_the_deployed_model_and_the_config_settings(images, tmp_path):
    from occreid.config import load_config
    from occreid.methods import build_model
    from occreid.modeling.checkpoint import save_checkpoint

    overrides = [
        "model.name=pgfl_kd",
        "model.backbone=resnet18",
        "model.pretrained=false",
        "data.image_size=[32,16]",
        "eval.flip=true",
        "eval.batch_size=2",
    ]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=5).eval()
    ckpt = tmp_path / "best.pt"
    save_checkpoint(
        ckpt, {"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "num_classes": 5}
    )

    extractor = FeatureExtractor.from_checkpoint(ckpt, device="cpu", progress=False)
    arrays, paths = images
    assert (extractor.image_size, extractor.flip, extractor.batch_size) == ((32, 16), True, 2)
    deployed = method.deploy().eval()
    batch = manual(arrays)
    with torch.no_grad():
        expected = (deployed(batch) + deployed(torch.flip(batch, dims=[3]))) / 2
    torch.testing.assert_close(extractor(paths), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(OccreidError, match="checkpoint not found"):
        FeatureExtractor.from_checkpoint(tmp_path / "missing.pt")
