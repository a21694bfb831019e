"""ViT backbones (occreid.modeling.vit), the ViT baseline, and what the method-agnostic trainer reads from a
method: batch needs, extra optimisers, the epoch, the cosine schedule."""

import re
from pathlib import Path

import pytest
import torch

from occreid.config import load_config
from occreid.engine.optim import lr_factor
from occreid.engine.trainer import train
from occreid.errors import OccreidError
from occreid.methods import build_model
from occreid.methods.baseline.method import Baseline
from occreid.modeling.checkpoint import load_checkpoint
from occreid.modeling.vit import ViTBackbone


def vit_cfg(*extra: str):
    return load_config(
        None,
        [
            "model.name=baseline",
            "model.backbone=vit_tiny_patch16",
            "model.pretrained=false",
            "model.vit_depth=2",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    ("size", "stride", "grid"),
    [
        ((256, 128), 16, (16, 8)),
        ((256, 128), 12, (21, 10)),
        ((128, 64), 16, (8, 4)),
        ((128, 64), 12, (10, 5)),
    ],
)
def test_token_shapes_for_both_strides(size, stride, grid):
    backbone = ViTBackbone("vit_tiny_patch16", size, stride=stride, depth=1)
    tokens = backbone.forward_features(torch.randn(2, 3, *size))
    assert backbone.grid_size == grid
    assert tokens.shape == (2, 1 + grid[0] * grid[1], 192)  # class token + patches, D of ViT-Tiny
    assert backbone.patch_geometry == (16, stride)
    assert backbone.patch_pos_embed().shape == (1, grid[0] * grid[1], 192)
    # The patch embedding moves by `stride`: the second patch of a row starts `stride` pixels on.
    assert backbone.vit.patch_embed.proj.stride == (stride, stride)


def test_steps_compose_to_forward_features():
    backbone = ViTBackbone("vit_tiny_patch16", (128, 64), depth=3).eval()
    x = torch.randn(2, 3, 128, 64)
    stepwise = backbone.norm(backbone.run_blocks(backbone.run_blocks(backbone.embed(x), 0, 1), 1, None))
    torch.testing.assert_close(stepwise, backbone.forward_features(x))


def _imagenet_like_checkpoint(path: Path) -> dict:
    """A 224 x 224 ViT-Tiny state dict (grid 14 x 14) whose position embedding is a known smooth function of
    the patch position, with the ImageNet classifier."""
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(
        img_size=224, patch_size=16, embed_dim=192, depth=1, num_heads=3, num_classes=1000
    )
    state = net.state_dict()
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    pos = torch.zeros(1, 1 + 196, 192)
    pos[0, 0] = 7.0  # the class token's entry
    pos[0, 1:, 0] = rows.flatten() / 13  # channel 0: the row, 0 at the top, 1 at the bottom
    pos[0, 1:, 1] = cols.flatten() / 13  # channel 1: the column
    state["pos_embed"] = pos
    torch.save(state, path)
    return state


def test_position_embedding_resized_from_a_checkpoint(tmp_path):
    from timm.layers import resample_abs_pos_embed

    state = _imagenet_like_checkpoint(tmp_path / "vit.pth")
    backbone = ViTBackbone(
        "vit_tiny_patch16", (256, 128), stride=12, depth=1, pretrained=str(tmp_path / "vit.pth")
    )
    pos = backbone.vit.pos_embed.detach()
    assert pos.shape == (1, 1 + 21 * 10, 192)
    expected = resample_abs_pos_embed(
        state["pos_embed"], new_size=(21, 10), old_size=(14, 14), num_prefix_tokens=1
    )
    torch.testing.assert_close(pos, expected)
    assert torch.equal(pos[0, 0], state["pos_embed"][0, 0])  # the class token's entry is kept as it is
    grid = pos[0, 1:].reshape(21, 10, 192)
    # Rows still run top to bottom and columns left to right over the new 21 x 10 grid.
    assert grid[0, :, 0].mean() < 0.1 and grid[-1, :, 0].mean() > 0.9
    assert grid[:, 0, 1].mean() < 0.15 and grid[:, -1, 1].mean() > 0.85
    assert (grid[1:, :, 0] - grid[:-1, :, 0]).min() > 0
    # Everything else is loaded unchanged; the classifier is dropped.
    torch.testing.assert_close(
        backbone.vit.patch_embed.proj.weight.detach(), state["patch_embed.proj.weight"]
    )
    torch.testing.assert_close(
        backbone.vit.blocks[0].mlp.fc1.weight.detach(), state["blocks.0.mlp.fc1.weight"]
    )
    assert not any(k.startswith("head") for k in backbone.vit.state_dict())


def test_checkpoint_errors_name_the_file(tmp_path):
    state = _imagenet_like_checkpoint(tmp_path / "vit.pth")
    del state["blocks.0.norm1.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(
        OccreidError, match=r"cut\.pth does not fit.*1 missing keys \(blocks\.0\.norm1\.weight"
    ):
        ViTBackbone("vit_tiny_patch16", (128, 64), depth=1, pretrained=str(tmp_path / "cut.pth"))
    with pytest.raises(OccreidError, match="does not exist"):
        ViTBackbone("vit_tiny_patch16", (128, 64), depth=1, pretrained=str(tmp_path / "absent.pth"))
    with pytest.raises(OccreidError, match="model.pretrained=true: vit_tiny_patch16 has no built-in weights"):
        ViTBackbone("vit_tiny_patch16", (128, 64), depth=1, pretrained=True)


def test_a_pickled_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"pos_embed": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(OccreidError, match=r"evil\.pth cannot be read"):
        ViTBackbone("vit_tiny_patch16", (128, 64), depth=1, pretrained=str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_camera_embedding_in_training_and_the_mean_camera_at_test():
    torch.manual_seed(0)
    backbone = ViTBackbone("vit_tiny_patch16", (64, 32), depth=1, num_cameras=3, camera_coef=3.0).eval()
    with torch.no_grad():
        backbone.camera_embed.normal_()
    x = torch.randn(2, 3, 64, 32)
    cam0 = backbone.forward_features(x, torch.tensor([0, 0]))
    cam1 = backbone.forward_features(x, torch.tensor([1, 1]))
    assert not torch.allclose(cam0, cam1)
    tokens = backbone.embed(x)  # no camera labels: the mean camera vector, x coef
    plain = backbone.vit._pos_embed(backbone.vit.patch_embed(x))
    torch.testing.assert_close(tokens - plain, (3.0 * backbone.camera_embed.mean(0)).expand_as(tokens))
    with pytest.raises(OccreidError, match="model.num_cameras"):
        backbone.embed(x, torch.tensor([0, 3]))


def test_vit_baseline_is_a_class_token_bnneck_and_deploys_to_it():
    cfg = vit_cfg("data.image_size=[64,32]")
    method = build_model(cfg, num_classes=5).eval()
    assert isinstance(method, Baseline)
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        tokens = method.feature_map(x)
        expected = method.necks["G"].bn(tokens[:, 0])  # BNNeck on the class token (neck_feat "after")
        torch.testing.assert_close(method(x), expected)
        torch.testing.assert_close(method.deploy()(x), expected)


def test_pgfl_kd_refuses_a_vit():
    cfg = load_config(
        None, ["model.name=pgfl_kd", "model.backbone=vit_tiny_patch16", "model.pretrained=false"]
    )
    with pytest.raises(OccreidError, match="model.backbone=vit_tiny_patch16: PGFL-KD pools a CNN"):
        build_model(cfg, num_classes=5)


def test_cosine_schedule_with_warmup():
    cfg = load_config(
        None,
        [
            "train.schedule=cosine",
            "train.epochs=11",
            "train.warmup_epochs=2",
            "train.warmup_factor=0.1",
            "train.cosine_min_factor=0.01",
        ],
    )
    factors = [lr_factor(cfg, e) for e in range(11)]
    assert factors[0] == pytest.approx(0.1) and factors[1] == pytest.approx(0.55)  # linear warm-up
    assert factors[2] == pytest.approx(1.0)  # the peak, then a half cosine
    assert factors[6] == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the cosine
    assert factors[10] == pytest.approx(0.01)  # the last epoch ends at lr x cosine_min_factor
    assert all(a > b for a, b in zip(factors[2:], factors[3:]))
    step = load_config(None, ["train.epochs=11", "train.warmup_epochs=0", "train.milestones=[4,8]"])
    assert [lr_factor(step, e) for e in (0, 4, 8)] == pytest.approx([1.0, 0.1, 0.01])


def test_the_trainer_never_asks_which_method_it_runs():
    """No method name and no model config in the engine's code (comments and docstrings may explain)."""
    import io
    import tokenize

    engine = Path(__file__).parents[1] / "occreid" / "engine"
    source = "\n".join(path.read_text() for path in sorted(engine.glob("*.py")))
    code, literals = [], []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            literals.append(tok.string.strip("\"'fr"))
        elif tok.type != tokenize.COMMENT:
            code.append(tok.string)
    code_text = "".join(code)
    assert not re.search(r"cfg\.model\b", code_text) and "model.name" not in code_text
    from occreid.methods import METHODS

    method_names = set(METHODS)
    assert {"baseline", "pgfl_kd"} <= method_names
    assert not method_names & set(literals)
    assert not any(name in code_text.lower() for name in ("pgfl", "ogfr", "baseline"))


# ---- training through the loop


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from occreid.data.synthocc import generate as generate_synthocc

    root = tmp_path_factory.mktemp("synth") / "synthocc"
    generate_synthocc(root, preset="small", seed=0, protocol="occluded")
    return root


def tiny_vit_cfg(root: Path, out: Path, *extra: str):
    return vit_cfg(
        "data.dataset=synthocc",
        f"data.root={root}",
        "data.image_size=[64,32]",
        "data.p=4",
        "data.k=4",
        "data.num_workers=0",
        "data.pad=4",
        "train.epochs=2",
        "train.steps_per_epoch=3",
        "train.warmup_epochs=1",
        "train.schedule=cosine",
        "train.eval_period=0",
        "train.log_period=1",
        "train.device=cpu",
        f"train.output_dir={out}",
        "eval.batch_size=64",
        "model.drop_path=0.1",
        *extra,
    )


class _WithAgent(Baseline):
    """A baseline whose BNNeck classifier has an optimiser of its own, and which records the epochs it is
    told: the shape of a method with an agent (OGFR), for the loop's contract."""

    epochs_seen: list[int] = []

    def extra_optimizers(self):
        return {"classifier": torch.optim.SGD(self.necks["G"].classifier.parameters(), lr=0.05, momentum=0.9)}

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        type(self).epochs_seen.append(epoch)


def test_exact_resume_with_two_optimisers(synth_root, tmp_path, monkeypatch):
    import occreid.engine.trainer as modeling

    monkeypatch.setattr(modeling, "build_model", lambda cfg, num_classes: _WithAgent(cfg, num_classes))
    full = train(tiny_vit_cfg(synth_root, tmp_path / "full"), progress=False)
    assert _WithAgent.epochs_seen == [0, 1]
    _WithAgent.epochs_seen.clear()
    train(tiny_vit_cfg(synth_root, tmp_path / "cut", "train.epochs=1"), progress=False)
    resumed = train(tiny_vit_cfg(synth_root, tmp_path / "cut"), resume="auto", progress=False)
    assert _WithAgent.epochs_seen == [0, 1]  # the resumed run is told it continues at epoch 1
    a, b = load_checkpoint(full.run_dir / "last.pt"), load_checkpoint(resumed.run_dir / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    # The extra optimiser owns the classifier (momentum state saved), the main one does not.
    extra = a["extra_optimizers"]["classifier"]
    assert len(extra["state"]) == 1 and extra["param_groups"][0]["lr"] == 0.05
    assert torch.equal(
        extra["state"][0]["momentum_buffer"],
        b["extra_optimizers"]["classifier"]["state"][0]["momentum_buffer"],
    )
    main_ids = [i for g in a["optimizer"]["param_groups"] for i in g["params"]]
    trainable = [
        p for p in _WithAgent(tiny_vit_cfg(synth_root, tmp_path / "x"), 2).parameters() if p.requires_grad
    ]
    assert len(main_ids) == len(trainable) - 1


def test_vit_baseline_overfits_a_tiny_set(synth_root, tmp_path, assert_overfits):
    # The CPU-scale ViT (ImageNet MobileNetV2 stem + 4 blocks); a ViT-Tiny from scratch needs far more steps.
    cfg = tiny_vit_cfg(
        synth_root,
        tmp_path / "fit",
        "model.backbone=vit_hybrid_mnv2",
        "model.pretrained=true",
        "train.epochs=10",
        "train.steps_per_epoch=4",
        "data.p=8",
        "data.erasing_prob=0",
        "train.lr=1e-3",
        "train.warmup_epochs=0",
        "model.drop_path=0",
        "model.vit_depth=4",
        "train.schedule=step",
        "train.milestones=[100]",
    )
    assert_overfits(cfg, synth_root)
