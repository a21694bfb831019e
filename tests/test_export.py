"""ONNX export of the deployed model, checked with onnxruntime, and the `occreid export` command."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from occreid.config import Config
from occreid.errors import OccreidError
from occreid.methods import build_model
from occreid.modeling.checkpoint import save_checkpoint
from occreid.modeling.export import export_onnx, verify_onnx

ort = pytest.importorskip("onnxruntime")
H, W = 64, 32


def make_method(neck_feat="after", backbone="resnet18"):
    cfg = Config()
    name = "baseline" if backbone.startswith("vit") else cfg.model.name  # the ViT baseline; PGFL-KD for CNNs
    cfg.model = cfg.model.model_copy(
        update=dict(name=name, backbone=backbone, pretrained=False, neck_feat=neck_feat, vit_depth=2)
    )
    cfg.data.image_size = (H, W)
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4)
    # one training-mode pass so the BN running statistics are not their identity init
    with torch.no_grad():
        method.train()(torch.randn(8, 3, H, W))
    return method, cfg


@pytest.mark.parametrize(
    ("neck_feat", "backbone"), [("after", "resnet18"), ("before", "resnet18"), ("after", "vit_tiny_patch16")]
)
def test_export_onnx_matches_pytorch_dynamic_batch(tmp_path, neck_feat, backbone):
    method, _ = make_method(neck_feat, backbone)
    deployed = method.deploy()
    path = tmp_path / "model.onnx"
    max_diff = export_onnx(deployed, path, (H, W), opset=17)
    assert max_diff < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = torch.randn(5, 3, H, W)  # a batch size not seen at export
    (got,) = session.run(["features"], {"images": x.numpy()})
    with torch.no_grad():
        expected = deployed(x).numpy()
    assert got.shape == (5, method.channels)  # 512 for ResNet-18, 192 for ViT-Tiny
    assert np.abs(got - expected).max() < 1e-4


def test_export_static_batch_and_no_verify(tmp_path):
    deployed = make_method()[0].deploy()
    path = tmp_path / "static.onnx"
    assert export_onnx(deployed, path, (H, W), opset=13, dynamic_batch=False, verify=False) is None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, H, W]
    assert verify_onnx(deployed, path, (H, W), batch=1) < 1e-4


def test_verify_detects_a_different_model(tmp_path):
    method, _ = make_method()
    path = tmp_path / "m.onnx"
    export_onnx(method.deploy(), path, (H, W), verify=False)
    other = method.deploy()
    with torch.no_grad():
        other.bn.weight.mul_(2.0)
    assert verify_onnx(other, path, (H, W)) > 1e-2


@pytest.fixture
def fake_checkpoint(tmp_path, monkeypatch):
    from occreid.inference import models as checkpoint

    method, cfg = make_method()
    calls = []

    def load_deployed_model(path, device="cpu"):
        calls.append((str(path), device))
        return method.deploy(), cfg

    monkeypatch.setattr(checkpoint, "load_deployed_model", load_deployed_model)
    ckpt = tmp_path / "last.pt"  # a real checkpoint: the export's metadata records its config and hash
    save_checkpoint(
        ckpt, {"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "num_classes": 4}
    )
    return ckpt, calls


def test_cli_export(tmp_path, fake_checkpoint):
    from occreid.cli import app

    ckpt, calls = fake_checkpoint
    out = tmp_path / "out" / "model.onnx"
    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(ckpt), "--out", str(out), "--opset", "17"]
    )
    assert result.exit_code == 0, result.output
    assert calls == [(str(ckpt), "cpu")]
    assert out.is_file()
    assert "input images (B, 3, 64, 32)" in result.output
    diff = float(result.output.split("max abs difference:")[1].split()[0])
    assert diff < 1e-4


def test_cli_export_errors(tmp_path, fake_checkpoint):
    from occreid.cli import app

    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]
    )
    assert isinstance(result.exception, OccreidError) and "missing.pt does not exist" in str(result.exception)
    ckpt, _ = fake_checkpoint
    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--atol", "-1"]
    )
    assert isinstance(result.exception, OccreidError) and "--atol -1" in str(result.exception)
