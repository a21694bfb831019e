"""Backbones, BNNeck, the baseline and PGFL-KD: shapes, weights loading, stop-gradients, ablation presets,
deployment (parameters, FLOPs, outputs) and the test features."""

import math

import pytest
import torch
import torchvision

from occreid.config import Config, read_yaml
from occreid.errors import OccreidError
from occreid.methods import build_model, presets
from occreid.methods.pgfl_kd.feb import ForegroundEnhancedBranch
from occreid.methods.pgfl_kd.losses import consistency_loss
from occreid.methods.pgfl_kd.part_pooling import part_pooling
from occreid.methods.pgfl_kd.sab import SemanticsAlignedBranch
from occreid.modeling.backbone import build_backbone, torchvision_cache_path
from occreid.modeling.bnneck import BNNeck
from occreid.modeling.complexity import count_flops, count_parameters, inference_cost

H, W = 64, 32  # small inputs: F is 4 x 2 with ResNet-18 and last stride 1


def make_cfg(name="pgfl_kd", **fields):
    """A tiny config; `fields` go to `model.*`, or to `pgfl_kd.*` where that section has them."""
    cfg = Config()
    switches = {k: v for k, v in fields.items() if k in type(cfg.pgfl_kd).model_fields}
    model = {k: v for k, v in fields.items() if k not in switches}
    cfg.model = cfg.model.model_copy(update=dict(name=name, backbone="resnet18", pretrained=False, **model))
    cfg.pgfl_kd = cfg.pgfl_kd.model_copy(update=switches)
    cfg.data.image_size = (H, W)
    return cfg


def make_batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    kpts = torch.rand(b, 17, 3, generator=g) * torch.tensor([W, H, 1.0])
    kpts[:, :, 2] = 0.9
    kpts[0, 13:, 2] = 0.0  # image 0: knees and ankles occluded
    return {
        "images": torch.randn(b, 3, H, W, generator=g),
        "pids": torch.arange(b // 2).repeat_interleave(2),
        "keypoints": kpts,
    }


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- backbone ----------------------------------------------------------------------------------------------
def test_resnet50_feature_map_384x128():
    backbone = build_backbone("resnet50", pretrained=False, last_stride=1).eval()
    with torch.no_grad():
        fmap = backbone.forward_features(torch.randn(2, 3, 384, 128))
    assert fmap.shape == (2, 2048, 24, 8)
    assert backbone.layer4[0].conv2.stride == (1, 1) and backbone.layer4[0].downsample[0].stride == (1, 1)


@pytest.mark.parametrize("last_stride,size", [(1, (4, 2)), (2, (2, 1))])
def test_resnet18_last_stride(last_stride, size):
    backbone = build_backbone("resnet18", pretrained=False, last_stride=last_stride)
    assert backbone.layer4[0].conv1.stride == (last_stride, last_stride)
    assert backbone.forward_features(torch.randn(2, 3, H, W)).shape == (2, 512, *size)


def test_pretrained_state_dict_path_loads_and_ignores_fc(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.weight / fc.bias
    backbone = build_backbone("resnet18", pretrained=str(path))
    torch.testing.assert_close(backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.testing.assert_close(backbone.bn1.running_var, reference.bn1.running_var)


def test_pretrained_state_dict_with_wrong_keys_is_a_clear_error(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        OccreidError, match=r"bad\.pth.*1 missing keys \(layer4\.1\.bn2\.weight\).*1 unexpected keys"
    ):
        build_backbone("resnet18", pretrained=str(path))
    with pytest.raises(OccreidError, match=r"resnet50.*shape mismatches"):
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
        build_backbone("resnet50", pretrained=str(path))
    with pytest.raises(OccreidError, match="nope.pth does not exist"):
        build_backbone("resnet18", pretrained=str(tmp_path / "nope.pth"))


def test_imagenet_weights_missing_from_cache_is_a_clear_error(offline_hub, tmp_path):
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert torchvision_cache_path("resnet18") == expected
    with pytest.raises(OccreidError) as err:
        build_backbone("resnet18", pretrained=True)
    assert str(expected) in str(err.value) and "model.pretrained" in str(err.value)
    assert "not in the torch hub cache" in str(err.value)
    assert len(offline_hub) == 1  # one failed attempt, no retries


# ---- BNNeck and components ---------------------------------------------------------------------------------
def test_bnneck_bot_init_and_frozen_bias():
    neck = BNNeck(16, 5)
    assert not neck.bn.bias.requires_grad and neck.bn.bias.abs().sum() == 0
    assert torch.all(neck.bn.weight == 1) and neck.classifier.bias is None
    assert neck.classifier.weight.std().item() == pytest.approx(0.001, rel=0.3)
    feat = torch.randn(6, 16) * 3 + 1
    feat_bn, logits = neck(feat)
    assert logits.shape == (6, 5)
    torch.testing.assert_close(feat_bn.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    assert neck.test_feature(feat, "before") is feat


def test_part_pooling_eq1_by_hand():
    fmap = torch.arange(8.0).view(1, 2, 2, 2)  # C = 2 channels over 2 x 2 positions
    heat = torch.zeros(1, 3, 2, 2)
    heat[0, 0, 1, 0] = 1.0  # one-hot on position (1, 0)
    heat[0, 1] = 0.25  # uniform
    # heat[0, 2] stays 0: an invisible group
    f_l = part_pooling(fmap, heat)
    torch.testing.assert_close(f_l, torch.tensor([[[2.0, 6.0], [1.5, 5.5], [0.0, 0.0]]]))


def test_feb_attention_eq2_eq3_by_hand():
    fmap = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)  # F_1 = (1, 0), F_2 = (0, 1)
    part = torch.tensor([[[2.0, 0.0], [9.0, 9.0]]])  # part 2 invisible -> f_L = (2, 0)
    visible = torch.tensor([[True, False]])
    feb = ForegroundEnhancedBranch("cosine", temperature=1.0)
    a1 = math.e / (math.e + 1)  # cos = (1, 0): softmax -> (e, 1) / (e + 1)
    torch.testing.assert_close(feb(fmap, part, visible), torch.tensor([[a1, 1 - a1]]))
    dot = ForegroundEnhancedBranch("dot", temperature=1.0)  # dot products (2, 0)
    a1 = math.exp(2) / (math.exp(2) + 1)
    torch.testing.assert_close(dot(fmap, part, visible), torch.tensor([[a1, 1 - a1]]))


def test_sab_shapes_and_groups():
    sab = SemanticsAlignedBranch(16, 8)
    f_l = torch.randn(4, 8, 16)
    f_p = sab(f_l)
    assert f_p.shape == (4, 16) and (f_p >= 0).all()
    f_l2 = f_l.clone()
    f_l2[:, 3] += 1.0  # changing part 3 changes only channel group 3 (before BN mixes the batch: eval mode)
    sab.eval()
    diff = (sab(f_l2) - sab(f_l)).abs().view(4, 8, 2).sum(dim=(0, 2))
    assert diff[3] > 0 and diff[[0, 1, 2, 4, 5, 6, 7]].sum() == 0


# ---- methods -----------------------------------------------------------------------------------------------
# The loss terms of each table row, written out from the paper (section 4.4) independently of the presets.
TABLE_ROWS = {
    "table6_row1_baseline": {"id_G", "tri_G"},
    "table6_row2_sab": {"id_G", "tri_G", "id_P", "tri_P"},
    "table6_row3_sab_i": {"id_G", "tri_G", "id_V", "tri_V"},
    "table6_row4_sab_im": {"id_G", "tri_G", "id_V", "tri_V", "mcl"},
    "table6_row5_sab_im_feb": {"id_G", "tri_G", "id_V", "tri_V", "mcl", "id_E", "tri_E"},
    "table6_row6_pgfl_kd": {"id_G", "tri_G", "id_V", "tri_V", "mcl", "id_E", "tri_E", "cl"},
    "table7_sab_cl": {"id_G", "tri_G", "id_V", "tri_V", "cl_sab", "id_E", "tri_E", "cl"},
}


@pytest.mark.parametrize("preset", sorted(TABLE_ROWS))
def test_ablation_preset_produces_its_rows_loss_terms(preset):
    values = read_yaml(presets()[preset])
    values["model"] |= {"backbone": "resnet18", "pretrained": False}
    cfg = Config.model_validate({**values, "data": {"image_size": [H, W]}})
    method = build_model(cfg, num_classes=4)
    terms = method.training_step(make_batch())
    assert set(terms) - set(method.metric_names) == TABLE_ROWS[preset]
    assert "acc" in terms and not terms["acc"].requires_grad and 0 <= terms["acc"].item() <= 1
    for name, value in terms.items():
        assert value.ndim == 0 and torch.isfinite(value), name
        if name != "acc":
            assert value.requires_grad, name


def test_presets_cover_every_table_row():
    assert {name for name in presets() if name.startswith("table")} == set(TABLE_ROWS)
    assert read_yaml(presets()["table6_row1_baseline"])["model"]["name"] == "baseline"


def test_terms_are_weighted_by_lambdas():
    method = build_model(make_cfg(), 4)
    batch = make_batch()
    base = method.training_step(batch)
    method.cfg.pgfl_kd.lambda_cl, method.cfg.pgfl_kd.lambda_mcl = 0.5, 1.0
    changed = method.training_step(batch)
    assert changed["cl"].item() == pytest.approx(2 * base["cl"].item(), rel=1e-4)
    assert changed["mcl"].item() == pytest.approx(4 * base["mcl"].item(), rel=1e-4)
    assert changed["id_G"].item() == pytest.approx(base["id_G"].item(), rel=1e-5)


def test_consistency_term_is_eq4_on_f_g_and_f_e():
    method = build_model(make_cfg(), 4)
    batch = make_batch()
    torch.manual_seed(1)
    terms = method.training_step(batch)
    f = method.branches(batch["images"], batch["keypoints"])  # same weights, same batch statistics
    expected = 0.25 * ((f["f_G"] - f["f_E"]) ** 2).mean()  # lambda_cl * mean over channels and batch
    assert terms["cl"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_consistency_sum_reduction_is_the_papers_squared_norm():
    cfg = make_cfg()
    method = build_model(cfg, 4)
    mean = method.training_step(make_batch())["cl"].item()
    cfg.pgfl_kd.cl_reduction = "sum"
    summed = method.training_step(make_batch())["cl"].item()
    channels = method.branches(make_batch()["images"], make_batch()["keypoints"])["f_G"].shape[1]
    assert summed == pytest.approx(channels * mean, rel=1e-4)


def _grads(loss, params):
    params = [p for p in params if p.requires_grad]
    return [
        g for g in torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True) if g is not None
    ]


def test_stop_gradients_in_pgfl_kd():
    method = build_model(make_cfg(), 4)
    terms = method.training_step(make_batch())
    backbone = list(method.backbone.parameters())
    # L_MCL: f_P is the teacher -> nothing reaches the SAB; the main branch (backbone) learns.
    assert _grads(terms["mcl"], list(method.sab.parameters())) == []
    assert sum(g.abs().sum() for g in _grads(terms["mcl"], backbone)) > 0
    # L_CL: f_E is the teacher -> the backbone's gradient is that of ||f_G - const||^2: nothing flows back
    # through f_E's attention (Eq. 2-3). Without the stop-gradient the path through f_E changes it.
    f = method.branches(
        make_batch()["images"], make_batch()["keypoints"]
    )  # same weights and batch statistics
    for teacher, should_match in ((f["f_E"].detach(), True), (f["f_E"], False)):
        expected = _grads(0.25 * ((f["f_G"] - teacher) ** 2).mean(), backbone)
        got = _grads(terms["cl"], backbone)
        same = all(torch.allclose(g, e, rtol=1e-4, atol=1e-9) for g, e in zip(got, expected))
        assert same == should_match


def test_consistency_gradient_reaches_f_g_only_not_the_feb():
    # F a leaf: the gradient of L_CL must be that of ||GAP(F) - const||^2, i.e. nothing flows through f_E's
    # attention (Eq. 2-3) or the heatmaps H into F.
    fmap = torch.rand(2, 16, 4, 2, requires_grad=True)
    heat = torch.softmax(torch.randn(2, 8, 8), -1).view(2, 8, 4, 2).requires_grad_()
    f_g = fmap.mean(dim=(2, 3))
    f_e = ForegroundEnhancedBranch()(fmap, part_pooling(fmap, heat), torch.ones(2, 8, dtype=torch.bool)) + f_g
    consistency_loss(f_g, f_e).backward()
    assert heat.grad is None
    expected = (2 * (f_g - f_e).detach() / (2 * 16))[:, :, None, None].expand(2, 16, 4, 2) / 8
    torch.testing.assert_close(fmap.grad, expected)


def test_invisible_parts_leave_the_mcl_sum():
    method = build_model(make_cfg(), 4)
    batch = make_batch()
    batch["keypoints"][:, :, 2] = 0.0  # nothing visible anywhere
    assert method.training_step(batch)["mcl"].item() == 0.0


def test_training_without_keypoints_is_a_clear_error():
    method = build_model(make_cfg(), 4)
    batch = make_batch()
    del batch["keypoints"]
    with pytest.raises(OccreidError, match="need keypoints.*data.keypoints"):
        method.training_step(batch)
    with pytest.raises(OccreidError, match=r"shape \(B, 17, 3\)"):
        method.training_step(dict(make_batch(), keypoints=torch.zeros(8, 16, 3)))
    # baseline and pose-free PGFL-KD settings do not need keypoints
    assert "id_G" in build_model(make_cfg("baseline"), 4).training_step(batch)
    assert set(build_model(make_cfg(sab=False, feb=False), 4).training_step(batch)) == {
        "id_G",
        "tri_G",
        "acc",
    }


@pytest.mark.parametrize(
    "feature,dim", [("f_G", 512), ("f_P", 512), ("f_V", 512), ("f_F", 512), ("f_E", 512)]
)
def test_test_features(feature, dim):
    method = build_model(make_cfg(test_feature=feature), 4)
    method.training_step(make_batch())
    method.eval()
    batch = make_batch(4, seed=3)
    with torch.no_grad():
        feats = method(batch["images"], batch["keypoints"])
        f = method.branches(batch["images"], batch["keypoints"])
    assert feats.shape == (4, dim)
    raw = f[feature]
    if feature in ("f_G", "f_V", "f_E"):  # supervised: through their BNNeck's BN (neck_feat="after")
        torch.testing.assert_close(feats, method.necks[feature[-1]].bn(raw))
    else:  # f_F and (with interaction) f_P never had a BNNeck: raw
        torch.testing.assert_close(feats, raw)
    if (
        feature != "f_G"
    ):  # one pass of all branches gives the same feature (the demo extracts all four at once)
        torch.testing.assert_close(method.test_feature(f, feature), feats)
    if feature != "f_G":
        with pytest.raises(OccreidError, match=f"test_feature={feature} needs keypoints"):
            method(batch["images"])


def test_test_feature_needs_its_branch():
    with pytest.raises(OccreidError, match="test_feature=f_E needs pgfl_kd.feb=true"):
        build_model(make_cfg(feb=False, test_feature="f_E"), 4)
    with pytest.raises(OccreidError, match="baseline only has f_G"):
        build_model(make_cfg("baseline", test_feature="f_P"), 4)


@pytest.mark.parametrize("neck_feat", ["after", "before"])
def test_deployed_matches_baseline_cost_and_method_output(neck_feat):
    method = build_model(make_cfg(neck_feat=neck_feat), 4)
    baseline = build_model(make_cfg("baseline", neck_feat=neck_feat), 4)
    method.training_step(make_batch())  # moves BN running statistics away from their init
    deployed, base_deployed = method.deploy(), baseline.deploy()
    n_backbone = count_parameters(method.backbone)
    assert count_parameters(deployed) == count_parameters(base_deployed)
    assert count_parameters(deployed) == n_backbone + (2 * 512 if neck_feat == "after" else 0)
    assert count_parameters(method) > count_parameters(deployed) + 8 * 512 * 64  # the branches are gone
    flops = count_flops(deployed, (1, 3, H, W))
    assert flops == count_flops(base_deployed, (1, 3, H, W)) and flops > 0
    assert flops == count_flops(deployed, (2, 3, H, W))  # per image
    images = make_batch(4, seed=5)["images"]
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(deployed(images), method(images), rtol=0, atol=1e-6)
        torch.testing.assert_close(deployed.forward_head(deployed.forward_features(images)), deployed(images))
        assert deployed.forward_features(images).shape == method.feature_map(images).shape == (4, 512, 4, 2)
        for p in method.backbone.parameters():  # the deployed module holds copies
            p.add_(1.0)
        assert not torch.allclose(deployed(images), method(images))


def test_inference_cost():
    method = build_model(make_cfg(), 4)
    cost = {f: inference_cost(method, f, (H, W)) for f in ("f_G", "f_P", "f_V", "f_F", "f_E")}
    deployed = method.deploy()
    assert cost["f_G"] == {"params": count_parameters(deployed), "flops": count_flops(deployed, (1, 3, H, W))}
    sab = count_parameters(method.sab)
    assert sab == 8 * 512 * 64 + 2 * 512
    assert cost["f_P"]["params"] == count_parameters(method.backbone) + sab  # f_P has no BNNeck (interaction)
    assert cost["f_V"]["params"] == cost["f_P"]["params"] + 2 * 512
    assert cost["f_E"]["params"] == cost["f_G"]["params"]  # the FEB has no parameters
    # f_P - f_F: SAB projections 8 x (512 -> 64) minus the FEB's two einsums over C x N (N = 4 x 2 positions)
    assert cost["f_P"]["flops"] - cost["f_F"]["flops"] == 2 * 8 * 512 * 64 - 2 * (2 * 512 * 8)
    # f_F - f_G: at least part pooling (2 K C N) and the FEB einsums (rendering the heatmaps adds a little)
    assert cost["f_F"]["flops"] - cost["f_G"]["flops"] >= 2 * 8 * 512 * 8 + 2 * (2 * 512 * 8)


def test_full_pgfl_kd_trains_on_a_fixed_batch():
    method = build_model(make_cfg(), 4)
    batch = make_batch()
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=3.5e-4)
    totals = []
    for _ in range(8):
        terms = method.training_step(batch)
        loss = sum(v for k, v in terms.items() if k not in method.metric_names)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.8 * totals[0]


@pytest.mark.parametrize("preset", sorted(TABLE_ROWS))
def test_ablation_config_files_match_the_presets(preset):
    """configs/ablations/<preset>.yaml, what users train, sets exactly the preset's switches on
    Occluded-Duke."""
    from occreid.config import load_config

    cfg = load_config(f"configs/ablations/{preset}.yaml")
    switches = read_yaml(presets()[preset])
    assert cfg.model.name == switches["model"]["name"]
    assert {k: getattr(cfg.pgfl_kd, k) for k in switches["pgfl_kd"]} == switches["pgfl_kd"]
    assert cfg.data.dataset == "occluded_duke" and cfg.train.output_dir.endswith(preset)
