"""OGFR: gradients reach only what each loss should train, the reward's sign on a constructed case, greedy
erasing, the pattern mixture at test, deployment (features, cost, ONNX, extractor, index), the ablation files,
the pictures and exact resume through the trainer."""

import inspect
import json
import math

import pytest
import torch
from torch.nn import functional as F

from occreid.config import Config, load_config, read_yaml
from occreid.errors import OccreidError
from occreid.methods import build_model, presets
from occreid.methods.ogfr.fepm import (
    PurificationAgent,
    greedy_tokens,
    log_prob_without_replacement,
    reinforce_loss,
    sample_tokens,
    scaled_advantage,
)
from occreid.modeling.complexity import count_flops, count_parameters

H, W = 64, 32  # 4 x 2 patches of 16 x 16
NUM_TYPES = 7


def make_cfg(depth=3, **ogfr):
    values = dict(pattern_block=1, agent_block=1, shared_blocks=1, agent_warmup_epochs=0)
    values.update(ogfr)
    return Config.model_validate(
        {
            "model": {
                "name": "ogfr",
                "backbone": "vit_tiny_patch16",
                "vit_depth": depth,
                "pretrained": False,
                "drop_path": 0.0,
            },
            "data": {"image_size": [H, W]},
            "ogfr": values,
        }
    )


def make_method(num_classes=4, depth=3, **ogfr):
    torch.manual_seed(0)
    return build_model(make_cfg(depth, **ogfr), num_classes)


def make_batch(b=8, seed=0, num_ids=4):
    g = torch.Generator().manual_seed(seed)
    occ_mask = torch.zeros(b, 1, H, W)
    occ_mask[:, :, H // 2 :] = 1.0  # the occluder covers the bottom half: patches 4..7
    images = torch.randn(b, 3, H, W, generator=g)
    return {
        "images": images,
        "occluded": images * (1 - occ_mask),
        "occ_mask": occ_mask,
        "pids": torch.arange(num_ids).repeat_interleave(b // num_ids),
        "camids": torch.zeros(b, dtype=torch.long),
        "occ_type": torch.randint(0, NUM_TYPES, (b,), generator=g),
    }


def loss_of(method, terms, skip=()):
    return sum(v for k, v in terms.items() if k not in method.metric_names and k not in skip)


def randomise_agent(method, seed=1):
    """A trained-looking agent: non-zero output layer, so its scores differ between tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        method.agent.score[-1].weight.copy_(torch.randn(method.agent.score[-1].weight.shape, generator=g))


# ---- gradients ---------------------------------------------------------------------------------------------
def test_agent_learns_only_from_reinforce_and_reid_parameters_never_from_it():
    method = make_method()
    randomise_agent(method)
    method.set_epoch(0)
    terms = method.training_step(make_batch())
    agent = {id(p) for p in method.agent.parameters()}
    others = [(n, p) for n, p in method.named_parameters() if id(p) not in agent]

    terms["rl"].backward(retain_graph=True)  # the REINFORCE term alone
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.agent.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for _, p in others), "rl reached the ReID model"

    method.zero_grad(set_to_none=True)
    loss_of(method, terms, skip=("rl",)).backward()  # every other term
    assert all(p.grad is None for p in method.agent.parameters())
    trained = {n for n, p in others if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"eraser.token", "necks.S.classifier.weight", "necks.T.classifier.weight"} <= trained
    assert any(n.startswith("backbone.patterns.") for n in trained)


def test_replacement_token_gets_gradient_from_the_teacher():
    method = make_method(fepm="random", distill=False)
    terms = method.training_step(make_batch())
    (terms["id_T"] + terms["tri_T"]).backward()
    assert method.eraser.token.grad is not None and method.eraser.token.grad.abs().sum() > 0


def test_agent_waits_for_its_warm_up():
    method = make_method(agent_warmup_epochs=2)
    randomise_agent(method)
    method.set_epoch(1)
    terms = method.training_step(make_batch())
    assert not terms["rl"].requires_grad and terms["rl"].item() == 0.0
    method.set_epoch(2)
    assert method.training_step(make_batch())["rl"].requires_grad
    assert set(method.extra_optimizers()) == {"agent"}
    owned = {id(p) for g in method.extra_optimizers()["agent"].param_groups for p in g["params"]}
    assert owned == {id(p) for p in method.agent.parameters()}


def test_terms_and_metrics():
    method = make_method(token_distill=True, occlusion_head=True)
    randomise_agent(method)
    terms = method.training_step(make_batch())
    assert set(terms) - set(method.metric_names) == {
        "id_S",
        "tri_S",
        "id_T",
        "tri_T",
        "feat",
        "logit",
        "token",
        "pattern",
        "occlusion",
        "rl",
    }
    assert terms["erased"].item() == pytest.approx(2 / 8)  # k = round(0.2 x 8) = 2 of 8 patches
    assert 0 < terms["entropy"].item() <= math.log(8) + 1e-6
    for name in method.metric_names:
        assert not terms[name].requires_grad, name


# ---- FEPM ------------------------------------------------------------------------------------------------
def test_sampling_without_replacement_is_plackett_luce():
    scores = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    probs = {p: log_prob_without_replacement(scores, torch.tensor([p])).exp().item() for p in pairs}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    torch.manual_seed(0)
    draws = sample_tokens(scores.expand(20000, 4), 2)
    assert (draws[:, 0] != draws[:, 1]).all()
    freq = (draws == torch.tensor([0, 3])).all(dim=1).float().mean().item()
    assert freq == pytest.approx(probs[(0, 3)], abs=0.01)


def test_greedy_erasing_is_deterministic_and_sampling_is_not():
    method = make_method()
    randomise_agent(method)
    images = make_batch()["images"]
    method.eval()
    a, b = method.teacher_forward(images), method.teacher_forward(images)
    assert torch.equal(a.index, b.index) and torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.index, a.scores.topk(2, dim=1).indices)
    method.train()
    torch.manual_seed(1)
    s1 = method.teacher_forward(images).index
    torch.manual_seed(1)  # the draws are the method's own stream, not torch's global generator
    s2 = method.teacher_forward(images).index
    assert not torch.equal(s1, s2)


def _bandit(advantage_norm: bool, steps: int = 150) -> float:
    """The agent on a bandit with the CPU scale's reward size (~1e-3 nats): erasing the patch token that
    carries a distractor feature earns 1e-3, any other erasing 0. Trained as the method trains it (Gumbel
    top-k sample, greedy baseline, ogfr.entropy_coef, Adam at ogfr.agent_lr); returns the policy's mean
    probability of the distractor token on fresh images (uniform: 1 / 8)."""
    o = make_cfg().ogfr
    torch.manual_seed(0)
    b, n, d, k, target = 32, 8, 16, 2, 5
    agent = PurificationAgent(d, 32)
    opt = torch.optim.Adam(agent.parameters(), lr=o.agent_lr)
    g = torch.Generator().manual_seed(0)
    mark = 2 * torch.randn(d, generator=g)

    def images(count: int) -> torch.Tensor:  # (count, 1 + N, D) tokens, the distractor at patch `target`
        tokens = torch.randn(count, 1 + n, d, generator=g)
        tokens[:, 1 + target] += mark
        return tokens

    def reward(index: torch.Tensor) -> torch.Tensor:
        return 1e-3 * (index == target).any(dim=1).float()

    for _ in range(steps):
        scores = agent(images(b))
        index = sample_tokens(scores, k)
        advantage = reward(index) - reward(greedy_tokens(scores, k))
        if advantage_norm:
            advantage = scaled_advantage(advantage)
        opt.zero_grad()
        reinforce_loss(scores, index, advantage, o.entropy_coef).backward()
        opt.step()
    with torch.no_grad():
        return agent(images(256)).softmax(dim=1)[:, target].mean().item()


def test_agent_learns_from_rewards_of_the_cpu_scales_size():
    """With the defaults (scaled advantages, ogfr.agent_lr) the policy concentrates on the rewarded token
    within 150 steps; with raw advantages the entropy bonus outweighs ~1e-3-nat advantages and the policy
    stays near uniform (what the CPU-scale runs showed before advantages were scaled)."""
    assert _bandit(advantage_norm=True) > 0.6
    assert _bandit(advantage_norm=False) < 0.2


def test_scaled_advantage_keeps_the_sign_and_sets_the_scale():
    advantage = torch.tensor([2e-3, -1e-3, 0.0, 5e-4])
    scaled = scaled_advantage(advantage)
    assert torch.equal(scaled.sign(), advantage.sign())
    assert scaled.std().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(scaled_advantage(torch.zeros(4)), torch.zeros(4))  # no information: no update


def test_reward_is_positive_for_erasing_a_pasted_distractor():
    """A teacher trained on single-colour identities (with random erasing of half the tokens, so the
    replacement token is learnt) sees identity 0 with identity 1's colour pasted over its bottom half. Erasing
    the 4 distractor patches raises log p(0); erasing the 4 patches of the person itself lowers it. (The gain
    is partial: in block 0, before the agent acts, the kept tokens already attended to the distractor.)"""
    method = make_method(depth=2, fepm="random", erase_ratio=0.5, patterns=False, distill=False, share="none")
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])  # 4 identities
    opt = torch.optim.Adam(method.parameter_groups(0.0), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(4).repeat_interleave(2)
    for _ in range(40):
        images = colours[pids][:, :, None, None] + 0.2 * torch.randn(8, 3, H, W, generator=g)
        batch = dict(make_batch(), images=images, occluded=images, pids=pids)
        terms = method.training_step(batch)
        opt.zero_grad()
        loss_of(method, terms).backward()
        opt.step()
    assert terms["acc_T"].item() == 1.0
    image = colours[0][:, None, None] + 0.2 * torch.randn(3, H, W, generator=g)
    image[:, H // 2 :] = colours[1][:, None, None] + 0.2 * torch.randn(3, H // 2, W, generator=g)
    images, y = image[None].repeat(2, 1, 1, 1), torch.zeros(2, dtype=torch.long)
    method.eval()
    x, _ = method.teacher.tokens_until(images, method.cfg.ogfr.agent_block)
    distractor, person = torch.tensor([[4, 5, 6, 7]] * 2), torch.tensor([[0, 1, 2, 3]] * 2)
    running_mean = method.necks["T"].bn.running_mean.clone()
    plain, erase_distractor, erase_person = method.identity_log_prob(x, [None, distractor, person], y)
    assert (erase_distractor - plain > 0.1).all()  # the reward of erasing the distractor
    assert (erase_person - plain < 0).all()
    assert torch.equal(method.necks["T"].bn.running_mean, running_mean)


def _distractor_images(pids: torch.Tensor, colours: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each identity's colour with the next identity's colour pasted over the bottom half (patches 4..7)."""
    images = colours[pids][:, :, None, None] + 0.2 * torch.randn(len(pids), 3, H, W, generator=g)
    other = colours[(pids + 1) % len(colours)][:, :, None, None]
    images[:, :, H // 2 :] = other + 0.2 * torch.randn(len(pids), 3, H // 2, W, generator=g)
    return images


def _distractor_share_after_agent_steps(steps: int = 12) -> tuple[float, float]:
    """OGFR with an agent, its teacher first trained (agent in warm-up: uniform erasing) on single-colour
    identities; then `steps` steps of the method's own REINFORCE term alone on images whose bottom half is
    another identity's colour. Returns the policy's probability of the 4 distractor patches (of 8) before and
    after: erasing them is what the reward favours
    (test_reward_is_positive_for_erasing_a_pasted_distractor)."""
    method = make_method(
        depth=2,
        erase_ratio=0.5,
        patterns=False,
        distill=False,
        share="none",
        agent_warmup_epochs=1,
        agent_lr=0.01,
    )
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    opt = torch.optim.Adam(method.parameter_groups(0.0, exclude={id(p) for p in method.agent.parameters()}))
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(4).repeat_interleave(2)
    method.set_epoch(0)  # warm-up: the agent does not learn, the teacher learns the identities
    for _ in range(40):
        images = colours[pids][:, :, None, None] + 0.2 * torch.randn(8, 3, H, W, generator=g)
        terms = method.training_step(dict(make_batch(), images=images, occluded=images, pids=pids))
        opt.zero_grad()
        loss_of(method, terms).backward()
        opt.step()
    method.set_epoch(1)  # the agent learns; only its optimiser steps
    agent_opt = method.extra_optimizers()["agent"]

    def share(images: torch.Tensor) -> float:
        with torch.no_grad():
            x, _ = method.teacher.tokens_until(images, method.cfg.ogfr.agent_block)
            return method.agent(x).softmax(dim=1)[:, 4:].sum(dim=1).mean().item()

    test_images = _distractor_images(pids, colours, g)
    before = share(test_images)
    for _ in range(steps):
        images = _distractor_images(pids, colours, g)
        terms = method.training_step(dict(make_batch(), images=images, occluded=images, pids=pids))
        agent_opt.zero_grad()
        terms["rl"].backward()
        agent_opt.step()
    return before, share(test_images)


def test_reinforce_in_the_method_moves_the_policy_toward_a_pasted_distractor():
    """The sign of the self-critical advantage (reward - reward_greedy) as OGFR computes it: a few agent steps
    raise the probability of erasing the distractor's patches (a flipped sign lowers it)."""
    before, after = _distractor_share_after_agent_steps()
    assert before == pytest.approx(0.5, abs=1e-6)  # zero-initialised agent: uniform over the 8 patches
    assert after > before + 0.05


def test_teacher_gets_the_holistic_view_and_the_student_the_occluded_one():
    method = make_method(share="none")
    batch = make_batch()
    seen = {}
    for name, part in (("teacher", method.teacher), ("student", method.backbone)):
        original = part.tokens_until

        def spy(images, *args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, images)
            return _original(images, *args, **kwargs)

        part.tokens_until = spy
    method.training_step(batch)
    assert not torch.equal(batch["images"], batch["occluded"])
    assert seen["teacher"] is batch["images"] and seen["student"] is batch["occluded"]


def test_fixed_mask_and_shuffled_reward():
    method = make_method(fepm="fixed", fixed_positions=(1, 6))
    x = torch.randn(3, 9, 192)
    index, scores = method.erase_index(x)
    assert scores is None and index.tolist() == [[1, 6]] * 3
    with pytest.raises(OccreidError, match=r"ogfr.fixed_positions=\[1\]: ogfr.fepm=fixed needs 2 distinct"):
        make_method(fepm="fixed", fixed_positions=(1,))
    # shuffled rewards: the same agent, batch and draws give the advantages in another order, so another loss
    plain, shuffled = make_method(), make_method(shuffle_reward=True)
    for m in (plain, shuffled):
        randomise_agent(m)
    batch = make_batch()
    assert plain.training_step(batch)["reward"] == shuffled.training_step(batch)["reward"]
    assert plain.training_step(batch)["rl"].item() != shuffled.training_step(batch)["rl"].item()


def test_agent_and_random_erasing_draw_from_separate_streams():
    """The zero-initialised agent samples uniformly like random erasing, but from its own stream: the two
    rows no longer erase the same tokens in warm-up (they did when both drew from torch's global
    generator)."""
    x = torch.randn(16, 9, 192)
    agent, random = make_method(), make_method(fepm="random")
    torch.manual_seed(0)
    a = agent.erase_index(x)[0]
    torch.manual_seed(0)
    r = random.erase_index(x)[0]
    assert not torch.equal(a, r)
    agent.set_epoch(0)  # reseeded per epoch: the same draws again (exact resume)
    torch.manual_seed(5)
    assert torch.equal(agent.erase_index(x)[0], a)


# ---- occlusion patterns ------------------------------------------------------------------------------------
def test_pattern_mixture_at_test_is_predicted_without_a_type_input():
    method = make_method().eval()
    captured = []
    method.backbone.patterns.register_forward_hook(lambda m, args, out: captured.append((args, out[1])))
    images = torch.randn(3, 3, H, W)
    assert "types" not in inspect.signature(method.extract).parameters
    method.extract(images)
    (args, prediction) = captured[-1]
    assert len(args) == 2 and args[1] is None  # no pattern given: the prediction is used
    torch.testing.assert_close(prediction.weights, prediction.logits.softmax(dim=1))
    torch.testing.assert_close(prediction.weights.sum(dim=1), torch.ones(3))
    assert (prediction.weights[0] - prediction.weights[1]).abs().sum() > 0  # it depends on the image


def test_pattern_groups_map_types_to_patterns_and_teacher_forcing_uses_them():
    groups = (0, 1, 1, 1, 1, 2, 3)
    method = make_method(pattern_groups=groups, pattern_train_mixture="true_type", fepm="off")
    assert method.backbone.patterns.num_patterns == 4
    captured = []
    method.backbone.patterns.register_forward_hook(lambda m, args, out: captured.append(out[1]))
    batch = make_batch()
    terms = method.training_step(batch)
    student = captured[0]  # the student runs first
    target = torch.tensor(groups)[batch["occ_type"]]
    torch.testing.assert_close(student.weights, F.one_hot(target, 4).float())
    torch.testing.assert_close(terms["pattern"], F.cross_entropy(student.logits, target))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(OccreidError, match="model.backbone=resnet18: OGFR is a ViT method"):
        build_model(
            Config.model_validate(
                {
                    "model": {"name": "ogfr", "backbone": "resnet18", "pretrained": False},
                    "data": {"image_size": [H, W]},
                }
            ),
            4,
        )
    with pytest.raises(OccreidError, match="ogfr.agent_block=3 must be below the ViT's 3 blocks"):
        make_method(agent_block=3)
    with pytest.raises(OccreidError, match="ogfr.agent_block=1 must be >= ogfr.pattern_block=2"):
        make_method(pattern_block=2, agent_block=1)
    with pytest.raises(OccreidError, match=r"ogfr.pattern_groups=\[0, 1\] must give each of the 7"):
        make_method(pattern_groups=(0, 1))
    with pytest.raises(OccreidError, match="ogfr.shared_blocks=3: at most 2"):
        make_method(shared_blocks=3)


@pytest.mark.parametrize("share,shared", [("none", 0), ("first", 1), ("all_but_last", 2)])
def test_teacher_shares_what_the_config_says(share, shared):
    method = make_method(share=share)
    s, t = method.backbone.vit.vit, method.teacher.vit.vit
    assert [t.blocks[i] is s.blocks[i] for i in range(3)] == [i < shared for i in range(3)]
    assert (t.patch_embed is s.patch_embed) == (share != "none") and t.norm is not s.norm
    assert (method.teacher.patterns is method.backbone.patterns) == (share != "none")


# ---- deployment --------------------------------------------------------------------------------------------
def trained_bn(method):
    with torch.no_grad():
        method.train().training_step(make_batch())  # BN running statistics away from their init
    return method.eval()


@pytest.mark.parametrize("neck_feat", ["after", "before"])
def test_deployed_student_takes_images_only_and_matches_the_students_feature(neck_feat):
    cfg = make_cfg(share="none")
    cfg.model.neck_feat = neck_feat
    torch.manual_seed(0)
    method = trained_bn(build_model(cfg, 4))
    deployed = method.deploy()
    assert list(inspect.signature(deployed.forward).parameters) == ["images"]
    images = torch.randn(4, 3, H, W)
    with torch.no_grad():
        got = deployed(images)
        x, _ = method.backbone.tokens_until(images, 3)  # the student's training path, in eval mode
        f_s = method.backbone.finish(x, 3)[:, 0]
        teacher = method.teacher_forward(images).tokens[:, 0]
    expected = method.necks["S"].bn(f_s) if neck_feat == "after" else f_s
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, method.extract(images))
    assert not torch.allclose(f_s, teacher, atol=1e-3)  # it is the student, not the teacher
    assert not any(n.startswith(("teacher", "agent", "eraser")) for n, _ in deployed.named_parameters())


def test_deployed_cost_is_the_vit_baselines_plus_pattern_head_and_embeddings():
    method = make_method(occlusion_head=True).eval()
    baseline_cfg = make_cfg()
    baseline_cfg.model.name = "baseline"
    baseline = build_model(baseline_cfg, 4).eval()
    d, n, h, p = 192, 8, 64, NUM_TYPES  # vit_tiny width, patches, pattern_hidden, patterns
    extra_params = p * d + 2 * d + (d * h + h) + (h * p + p)  # E, LayerNorm, token MLP, classifier
    extra_flops = 2 * n * d * h + 2 * h * p + 2 * p * d  # token MLP, classifier, w @ E
    assert count_parameters(method.deploy()) == count_parameters(baseline.deploy()) + extra_params
    assert (
        count_flops(method.deploy(), (1, 3, H, W))
        == count_flops(baseline.deploy(), (1, 3, H, W)) + extra_flops
    )


def test_onnx_export_of_the_student_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from occreid.modeling.export import export_onnx

    deployed = trained_bn(make_method()).deploy()
    assert export_onnx(deployed, tmp_path / "ogfr.onnx", (H, W), opset=17) < 1e-4


def test_extractor_and_index_use_the_deployed_student(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from occreid.cli import app
    from occreid.inference.extractor import FeatureExtractor
    from occreid.modeling.checkpoint import save_checkpoint

    method = trained_bn(make_method())
    cfg = method.cfg
    ckpt = tmp_path / "best.pt"
    save_checkpoint(
        ckpt, {"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "num_classes": 4}
    )
    (tmp_path / "gallery").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        array = torch.randint(0, 256, (H, W, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(array).save(tmp_path / "gallery" / f"{i}.png")
    extractor = FeatureExtractor.from_checkpoint(ckpt, device="cpu", progress=False)
    paths = [str(tmp_path / "gallery" / f"{i}.png") for i in range(3)]
    batch = torch.stack([extractor._load(p) for p in paths])  # resized and normalised
    with torch.no_grad():
        torch.testing.assert_close(extractor(paths), method.extract(batch), rtol=1e-4, atol=1e-5)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(tmp_path / "gallery"),
            "--out",
            str(tmp_path / "index.npz"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "search",
            "--index",
            str(tmp_path / "index.npz"),
            "--image",
            paths[1],
            "--topk",
            "1",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["results"][0]
    assert top["path"].endswith("1.png") and top["distance"] == pytest.approx(0.0, abs=1e-4)


# ---- ablations ---------------------------------------------------------------------------------------------
# What each row differs in from full OGFR (row 5), written out from docs/ogfr.md section 7.
ROW_CHANGES = {
    "ogfr_row1_two_view": {"distill": False, "patterns": False, "fepm": "off"},
    "ogfr_row2_distill": {"patterns": False, "fepm": "off"},
    "ogfr_row3_patterns": {"fepm": "off"},
    "ogfr_row4_fepm_random": {"fepm": "random"},
    "ogfr_row5_fepm_agent": {},
    "ogfr_rho_0.1": {"erase_ratio": 0.1},
    "ogfr_rho_0.3": {"erase_ratio": 0.3},
    "ogfr_patterns_1": {"pattern_groups": (0, 0, 0, 0, 0, 0, 0)},
    "ogfr_patterns_2": {"pattern_groups": (0, 1, 1, 1, 1, 1, 1)},
    "ogfr_patterns_4": {"pattern_groups": (0, 1, 1, 1, 1, 2, 3)},
    "ogfr_teacher_separate": {"share": "none"},
    "ogfr_teacher_all_but_last": {"share": "all_but_last"},
    "ogfr_shuffled_reward": {"shuffle_reward": True},
}
ROW_TERMS = {
    "ogfr_row1_two_view": {"id_S", "tri_S", "id_T", "tri_T"},
    "ogfr_row2_distill": {"id_S", "tri_S", "id_T", "tri_T", "feat", "logit"},
    "ogfr_row3_patterns": {"id_S", "tri_S", "id_T", "tri_T", "feat", "logit", "pattern"},
    "ogfr_row4_fepm_random": {"id_S", "tri_S", "id_T", "tri_T", "feat", "logit", "pattern"},
    "ogfr_row5_fepm_agent": {"id_S", "tri_S", "id_T", "tri_T", "feat", "logit", "pattern", "rl"},
}


def switches(preset: str) -> dict:
    return {
        k: tuple(v) if isinstance(v, list) else v for k, v in read_yaml(presets()[preset])["ogfr"].items()
    }


def test_presets_cover_every_row():
    assert {name for name in presets() if name.startswith("ogfr")} == set(ROW_CHANGES)


@pytest.mark.parametrize("preset", sorted(ROW_CHANGES))
def test_ablation_config_files_set_exactly_their_switches(preset):
    cfg = load_config(f"configs/ablations/{preset}.yaml")
    full = load_config("configs/occluded_duke/ogfr.yaml")
    changed = {k for k in type(cfg.ogfr).model_fields if getattr(cfg.ogfr, k) != getattr(full.ogfr, k)}
    assert {k: getattr(cfg.ogfr, k) for k in changed} == ROW_CHANGES[preset]
    assert {k: getattr(cfg.ogfr, k) for k in switches(preset)} == switches(preset)
    assert cfg.model == full.model and cfg.data == full.data and cfg.loss == full.loss
    assert cfg.data.dataset == "occluded_duke" and cfg.train.output_dir.endswith(preset)


@pytest.mark.parametrize("preset", sorted(ROW_TERMS))
def test_ablation_rows_produce_their_loss_terms(preset):
    method = make_method(**switches(preset))
    terms = method.training_step(make_batch())
    assert set(terms) - set(method.metric_names) == ROW_TERMS[preset]
    assert ("reward" in terms) == (switches(preset)["fepm"] != "off")


# ---- pictures ----------------------------------------------------------------------------------------------
def test_class_token_attention_reproduces_the_attention_output():
    from occreid.evaluation.token_maps import class_token_attention

    attn = make_method().backbone.vit.vit.blocks[-1].attn
    x = torch.randn(2, 9, 192)
    weights = class_token_attention(attn, x)  # (B, heads, T)
    v = attn.qkv(x).reshape(2, 9, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)[2]
    out_cls = attn.proj((weights[:, :, None] @ v).reshape(2, -1))  # (B, D)
    torch.testing.assert_close(out_cls, attn(x)[:, 0], rtol=1e-4, atol=1e-5)


def test_pictures(tmp_path):
    from PIL import Image

    from occreid.evaluation.token_maps import attention_maps, draw_erased_tokens

    method = make_method()
    randomise_agent(method)
    baseline_cfg = make_cfg()
    baseline_cfg.model.name = "baseline"
    torch.manual_seed(0)  # as make_method: the baseline's ViT starts from the student's very weights
    baseline = build_model(baseline_cfg, 4)
    student_vit, baseline_vit = method.backbone.vit.state_dict(), baseline.backbone.state_dict()
    assert all(torch.equal(student_vit[k], baseline_vit[k]) for k in baseline_vit)
    images = make_batch(b=4)["images"]
    index = draw_erased_tokens(method, images, tmp_path / "erased.png")
    method.eval()
    assert torch.equal(index, method.teacher_forward(images).index) and index.shape == (4, 2)
    maps = attention_maps(
        {"ViT baseline": baseline, "OGFR student": method}, images, tmp_path / "att.png", method.cfg
    )
    assert set(maps) == {"ViT baseline", "OGFR student"}
    for m in maps.values():
        assert m.shape == (4, 4, 2)
        torch.testing.assert_close(m.sum(dim=(1, 2)), torch.ones(4))
    # the same ViT weights: the maps differ only through the student's occlusion pattern embeddings
    assert not torch.allclose(maps["ViT baseline"], maps["OGFR student"])
    for name in ("erased.png", "att.png"):
        assert Image.open(tmp_path / name).size[0] > 100
    with pytest.raises(OccreidError, match="fepm=agent"):
        draw_erased_tokens(make_method(fepm="random"), images, tmp_path / "x.png")


# ---- resume ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_agent_learns_after_its_warm_up_and_every_term_is_logged(tmp_path):
    """(Exact resume of OGFR, the agent's optimiser included: tests/test_training.py, over every method.)"""
    from occreid.data.synthocc import generate as generate_synthocc
    from occreid.engine.trainer import train
    from occreid.modeling.checkpoint import load_checkpoint

    root = tmp_path / "synthocc"
    generate_synthocc(root, preset="small", seed=0, protocol="occluded")

    def cfg(out, *extra):
        return load_config(
            "configs/demo/ogfr.yaml",
            [
                f"data.root={root}",
                "data.image_size=[64,32]",
                "data.p=4",
                "data.k=2",
                "data.num_workers=0",
                "data.pad=4",
                "model.vit_depth=2",
                "ogfr.agent_block=1",
                "ogfr.shared_blocks=1",
                "ogfr.agent_warmup_epochs=1",
                "train.epochs=2",
                "train.steps_per_epoch=2",
                "train.warmup_epochs=0",
                "train.eval_period=0",
                "train.log_period=1",
                "train.device=cpu",
                f"train.output_dir={out}",
                "eval.batch_size=64",
                *extra,
            ],
        )

    full = train(cfg(tmp_path / "full"), progress=False)
    assert load_checkpoint(full.run_dir / "last.pt")["extra_optimizers"]["agent"]["state"], "never stepped"
    records = [json.loads(line) for line in (full.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["rl"] != 0 for r in train_records] == [False, False, True, True]
    assert {"reward", "reward_greedy", "entropy", "erased", "pattern", "feat", "logit"} <= set(
        train_records[0]
    )
