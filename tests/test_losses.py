"""Losses: label-smoothed CE, batch-hard triplet, consistency (Eq. 4), multi-part contrastive (Eq. 5)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occreid.methods.pgfl_kd.losses import consistency_loss, multi_part_contrastive_loss, part_positive_mask
from occreid.modeling.losses import batch_hard_triplet_loss, cross_entropy_label_smoothing
from occreid.pose.schema import PART_FLIP, PART_GROUPS


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_ce_equals_torch(eps):
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(6, 5, generator=g) * 3, torch.tensor([0, 4, 2, 2, 1, 3])
    ours = cross_entropy_label_smoothing(logits, targets, eps)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets, label_smoothing=eps))


def test_label_smoothing_ce_hand_value():
    # logits 0 everywhere over 4 classes: every log p = -log 4, whatever eps.
    assert cross_entropy_label_smoothing(
        torch.zeros(2, 4), torch.tensor([1, 3]), 0.1
    ).item() == pytest.approx(math.log(4))


# 2-D points; identities 0: a0 (0,0), a1 (0,3); 1: a2 (1,0), a3 (4,0).
POINTS = torch.tensor([[0.0, 0.0], [0.0, 3.0], [1.0, 0.0], [4.0, 0.0]])
PIDS = torch.tensor([0, 0, 1, 1])


def test_batch_hard_triplet_hand_built():
    # hardest positive / negative distances per anchor:
    # a0: d_ap 3, d_an 1;  a1: 3, sqrt(10);  a2: 3, 1;  a3: 3, 4
    gaps = [3 - 1, 3 - math.sqrt(10), 3 - 1, 3 - 4]
    expected = sum(max(0.0, g + 0.3) for g in gaps) / 4  # = (2.3 + 0.13772 + 2.3 + 0) / 4
    assert expected == pytest.approx(1.18443, abs=1e-5)
    assert batch_hard_triplet_loss(POINTS, PIDS, 0.3).item() == pytest.approx(expected, abs=1e-5)
    soft = sum(math.log1p(math.exp(g)) for g in gaps) / 4
    assert batch_hard_triplet_loss(POINTS, PIDS, None).item() == pytest.approx(soft, abs=1e-5)


def test_triplet_gradient_finite_with_duplicates_and_zero_without_negatives():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 1.0], [3.0, 1.0]], requires_grad=True)
    loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1]), 0.3)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    # identical positives (d_ap = 0), negatives at sqrt(5) > margin: loss 0
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert batch_hard_triplet_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 0.3).item() == 0.0


def test_consistency_loss_hand_values_and_stop_gradient():
    student = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0, 5.0, 4.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    # squared differences per sample: [1, 0, 4, 0] -> sum 5, mean 1.25;  [1, 1, 1, 1] -> sum 4, mean 1
    assert consistency_loss(student, teacher, "sum").item() == pytest.approx(4.5)
    loss = consistency_loss(student, teacher)  # default: mean over channels
    assert loss.item() == pytest.approx(1.125)
    loss.backward()
    assert teacher.grad is None  # sg(teacher)
    # d/ds mean_b mean_c (s - t)^2 = 2 (s - t) / (B * C)
    torch.testing.assert_close(student.grad, 2 * (student - teacher).detach() / 8)


def test_part_positive_mask_uses_left_right_mirrors():
    mask = part_positive_mask(PART_FLIP)
    assert mask.shape == (8, 8) and mask.diagonal().all()
    pairs = {
        (PART_GROUPS[i], PART_GROUPS[j]) for i, j in zip(*torch.nonzero(mask & ~torch.eye(8, dtype=bool)).T)
    }
    assert pairs == {
        ("left_lower_arm", "right_lower_arm"),
        ("right_lower_arm", "left_lower_arm"),
        ("left_knee", "right_knee"),
        ("right_knee", "left_knee"),
        ("left_ankle", "right_ankle"),
        ("right_ankle", "left_ankle"),
    }
    assert mask[PART_GROUPS.index("head")].sum() == 1 and mask[PART_GROUPS.index("torso")].sum() == 1


def test_mcl_two_parts_by_hand():
    # K = 2 groups of 2 channels; f_g,1 = (1, 0), f_g,2 = (0, 1); f_p,1 = (1, 0), f_p,2 = (0, 2); dot, T = 1.
    f_g = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    f_p = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    own = part_positive_mask([0, 1])
    # part 1: logits (1, 0) -> log(1 + e^-1);  part 2: logits (0, 2) -> log(1 + e^-2)
    l1, l2 = math.log1p(math.exp(-1)), math.log1p(math.exp(-2))
    assert l1 + l2 == pytest.approx(0.440189, abs=1e-6)
    loss = multi_part_contrastive_loss(f_g, f_p, own, similarity="dot", temperature=1.0)
    assert loss.item() == pytest.approx(l1 + l2, abs=1e-6)
    vis = torch.tensor([[True, False]])  # an invisible part i leaves the sum
    assert multi_part_contrastive_loss(f_g, f_p, own, vis, "dot", 1.0).item() == pytest.approx(l1, abs=1e-6)
    # temperature 0.5 doubles the logits: log(1 + e^-2) + log(1 + e^-4)
    assert multi_part_contrastive_loss(
        f_g, f_p, own, similarity="dot", temperature=0.5
    ).item() == pytest.approx(math.log1p(math.exp(-2)) + math.log1p(math.exp(-4)), abs=1e-6)
    # cosine: f_p,2 normalised to (0, 1) -> both parts log(1 + e^-1/T)
    assert multi_part_contrastive_loss(
        f_g, f_p, own, similarity="cosine", temperature=1.0
    ).item() == pytest.approx(2 * l1, abs=1e-6)
    # mirrors of each other: every j is positive -> loss 0
    assert multi_part_contrastive_loss(
        f_g, f_p, part_positive_mask([1, 0]), similarity="dot", temperature=1.0
    ).item() == pytest.approx(0.0, abs=1e-7)


def _mcl_numpy(f_g, f_p, positive, visible, cosine, t):
    """Eq. 5 written out with loops."""
    total = 0.0
    for b in range(f_g.shape[0]):
        g, p = f_g[b], f_p[b]
        if cosine:
            g = g / np.linalg.norm(g, axis=1, keepdims=True)
            p = p / np.linalg.norm(p, axis=1, keepdims=True)
        for i in range(g.shape[0]):
            if not visible[b, i]:
                continue
            s = np.exp(np.array([g[j] @ p[i] for j in range(g.shape[0])]) / t)
            total -= np.log(s[positive[i]].sum() / s.sum())
    return total / f_g.shape[0]


@pytest.mark.parametrize("similarity,t", [("dot", 1.0), ("cosine", 0.1), ("cosine", 0.5)])
def test_mcl_matches_loop_reference_k4(similarity, t):
    rng = np.random.default_rng(1)
    f_g, f_p = rng.normal(size=(3, 4, 2)).astype(np.float32), rng.normal(size=(3, 4, 2)).astype(np.float32)
    flip = [0, 2, 1, 3]  # parts 1 and 2 are left/right mirrors
    positive = part_positive_mask(flip)
    visible = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    expected = _mcl_numpy(f_g, f_p, positive.numpy(), visible, similarity == "cosine", t)
    got = multi_part_contrastive_loss(
        torch.from_numpy(f_g), torch.from_numpy(f_p), positive, torch.from_numpy(visible), similarity, t
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_mcl_no_gradient_into_part_features():
    f_g = torch.randn(2, 8, 4, requires_grad=True)
    f_p = torch.randn(2, 8, 4, requires_grad=True)
    multi_part_contrastive_loss(f_g, f_p, part_positive_mask(PART_FLIP)).backward()
    assert f_p.grad is None
    assert f_g.grad.abs().sum() > 0
