"""OGFR: occlusion-guided feature purification learning via reinforced knowledge distillation (OGFR spec;
docs/models.md "OGFR"). A holistic teacher (sees x) purified by an agent, distilled into an occluded student
(sees x~); both are occlusion-aware ViTs. Only the student is deployed.

Training terms (each already weighted; `metric_names` are logged, not summed):

    id_S, tri_S         ReID(student)                 on f_S, the student's class token of x~
    id_T, tri_T         ReID(teacher, purified)       on f_T, the teacher's class token of x after erasing
    feat, logit         lambda_f L_feat, lambda_l L_logit          (ogfr.distill)
    token               lambda_token L_token                       (ogfr.token_distill)
    pattern             lambda_p CE(pattern head, t)               (ogfr.patterns)
    occlusion           lambda_occ BCE(per-patch head, m)          (ogfr.occlusion_head)
    rl                  REINFORCE + entropy bonus; reaches only the agent
                        (detached state, reward without grad)

The agent (ogfr.fepm="agent") has its own Adam optimiser (`extra_optimizers`) and learns from epoch
ogfr.agent_warmup_epochs on; before that its zero-initialised output samples uniformly (random erasing).
"""

from __future__ import annotations

import copy
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from occreid.config import Config
from occreid.data.occlusion import patch_mask
from occreid.errors import OccreidError
from occreid.methods.ogfr.distill import feature_distillation, logit_distillation, token_distillation
from occreid.methods.ogfr.fepm import (
    PurificationAgent,
    TokenEraser,
    fixed_tokens,
    greedy_tokens,
    num_erased,
    policy_entropy,
    random_tokens,
    reinforce_loss,
    sample_tokens,
    scaled_advantage,
)
from occreid.methods.ogfr.oavit import OcclusionAwareViT
from occreid.methods.ogfr.patterns import OcclusionPatterns
from occreid.modeling.base import BatchNeeds, ReidMethod
from occreid.modeling.bnneck import BNNeck
from occreid.modeling.vit import VIT_ARCHS, ViTBackbone
from occreid.utils.device import without_autocast


def teacher_vit(student: ViTBackbone, share: str, shared_blocks: int) -> ViTBackbone:
    """The teacher's ViT: a copy of the student's (same initial weights) that shares with it nothing ("none"),
    the embeddings and the first `shared_blocks` blocks ("first"), or all but the last block ("all_but_last");
    the final norm is always the teacher's own."""
    teacher = copy.deepcopy(student)
    if share == "none":
        return teacher
    num_shared = student.depth - 1 if share == "all_but_last" else shared_blocks
    t, s = teacher.vit, student.vit
    t.patch_embed, t.cls_token, t.pos_embed, t.norm_pre = s.patch_embed, s.cls_token, s.pos_embed, s.norm_pre
    teacher.camera_embed = student.camera_embed
    for i in range(num_shared):
        t.blocks[i] = s.blocks[i]
    return teacher


def occluded_patches(occ_mask: Tensor, vit: nn.Module, threshold: float) -> Tensor:
    """`patch_mask` (docs/ogfr.md section 1, m) on the ViT's own token grid, (B, N) bool. The hybrid ViT's
    convolutional stem pads an image whose sides are not multiples of 16 and so has ceil(H/16) x ceil(W/16)
    tokens: the pixel mask is padded (uncovered) at the bottom and right to that grid first."""
    kernel, stride = vit.patch_geometry
    (gh, gw), (h, w) = vit.grid_size, occ_mask.shape[-2:]
    pad_h, pad_w = max(0, (gh - 1) * stride + kernel - h), max(0, (gw - 1) * stride + kernel - w)
    return patch_mask(F.pad(occ_mask, (0, pad_w, 0, pad_h)), kernel, stride, threshold)


@dataclass
class TeacherOutput:
    x: Tensor  # (B, 1 + N, D) tokens after block l_a, before erasing
    index: Tensor | None  # (B, k) erased patch tokens; None without FEPM
    scores: Tensor | None  # (B, N) the agent's scores; None without an agent
    tokens: Tensor  # (B, 1 + N, D) final, purified tokens


@contextmanager
def _without_dropout(module: nn.Module):
    """Eval mode (no drop path) for the reward's forward passes, training mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class OGFR(ReidMethod):
    metric_names = ("acc_S", "acc_T", "acc_pattern", "reward", "reward_greedy", "entropy", "erased")
    deployed_neck = "S"  # the student's: at test time OGFR is its student alone

    def __init__(self, cfg: Config, num_classes: int) -> None:
        m, o = cfg.model, cfg.ogfr
        if m.backbone not in VIT_ARCHS:
            raise OccreidError(
                f"model.backbone={m.backbone}: OGFR is a ViT method; choose one of {', '.join(VIT_ARCHS)}"
            )
        if m.test_feature != "f_G":
            raise OccreidError(
                f"model.test_feature={m.test_feature}: OGFR's student has only f_G "
                "(set model.test_feature=f_G)"
            )
        super().__init__(cfg, num_classes)
        student_vit: ViTBackbone = self.backbone
        depth, dim = student_vit.depth, student_vit.out_channels
        _check_blocks(o, depth)
        groups = o.pattern_groups if o.pattern_groups is not None else tuple(range(len(cfg.occlusion.types)))
        _check_groups(groups, len(cfg.occlusion.types))
        # (T,) the pattern index of each occlusion type
        self.register_buffer("pattern_of_type", torch.tensor(groups, dtype=torch.long), persistent=False)

        patterns = (
            OcclusionPatterns(dim, max(groups) + 1, o.pattern_hidden, o.pattern_coef) if o.patterns else None
        )
        teacher_patterns = copy.deepcopy(patterns) if o.share == "none" else patterns
        # The student is `backbone`: what deploy() ships. The teacher shares what ogfr.share says.
        self.backbone = OcclusionAwareViT(student_vit, patterns, o.pattern_block)
        self.teacher = OcclusionAwareViT(
            teacher_vit(student_vit, o.share, o.shared_blocks), teacher_patterns, o.pattern_block
        )
        self.necks = nn.ModuleDict({"S": BNNeck(dim, num_classes), "T": BNNeck(dim, num_classes)})
        self.occlusion_head = nn.Linear(o.pattern_hidden, 1) if o.patterns and o.occlusion_head else None
        self.num_erased = num_erased(o.erase_ratio, student_vit.num_patches) if o.fepm != "off" else 0
        if self.num_erased >= student_vit.num_patches:
            raise OccreidError(
                f"ogfr.erase_ratio={o.erase_ratio} erases all {student_vit.num_patches} tokens; lower it"
            )
        self.eraser = TokenEraser(dim) if self.num_erased else None
        self.agent = PurificationAgent(dim, o.agent_hidden) if o.fepm == "agent" and self.num_erased else None
        _check_fixed(o, self.num_erased, student_vit.num_patches)
        self._agent_optimizer: torch.optim.Optimizer | None = None
        # The token draws (which tokens to erase, the shuffled rewards' order) have their own stream per FEPM
        # kind, so the agent's and random erasing's rows share no draw; reseeded each epoch (exact resume).
        self.token_rng = torch.Generator()
        self.set_epoch(0)

    # ---- what the training loop reads

    def batch_needs(self) -> BatchNeeds:
        return BatchNeeds(paired_views=True)

    def extra_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.agent is None:
            return {}
        if self._agent_optimizer is None:
            self._agent_optimizer = torch.optim.Adam(self.agent.parameters(), lr=self.cfg.ogfr.agent_lr)
        return {"agent": self._agent_optimizer}

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        stream = zlib.crc32(self.cfg.ogfr.fepm.encode())
        seed = np.random.SeedSequence([self.cfg.train.seed, epoch, stream]).generate_state(1)[0]
        self.token_rng.manual_seed(int(seed))

    @property
    def find_unused_parameters(self) -> bool:
        """During its warm-up the agent's loss is a constant: its parameters get no gradient."""
        return self.agent is not None and self.cfg.ogfr.agent_warmup_epochs > 0

    @property
    def agent_learns(self) -> bool:
        """The agent is trained from epoch ogfr.agent_warmup_epochs (0-based) on."""
        return self.agent is not None and self.epoch >= self.cfg.ogfr.agent_warmup_epochs

    def erase_index(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Which patch tokens to erase from teacher tokens x (B, 1 + N, D) after block ogfr.agent_block:
        (index (B, k) or None without FEPM, the agent's scores (B, N) or None). The agent samples in training
        and takes its top-k at evaluation; "random" draws uniformly; "fixed" erases ogfr.fixed_positions."""
        if self.eraser is None:
            return None, None
        if self.cfg.ogfr.fepm == "fixed":
            return fixed_tokens(x.shape[0], self.cfg.ogfr.fixed_positions, x.device), None
        if self.agent is None:
            return random_tokens(x.shape[0], x.shape[1] - 1, self.num_erased, x.device, self.token_rng), None
        scores = self.agent(x)  # (B, N), from detached tokens
        index = (
            sample_tokens(scores, self.num_erased, self.token_rng)
            if self.training
            else greedy_tokens(scores, self.num_erased)
        )
        return index, scores

    def purify(self, x: Tensor, index: Tensor | None) -> Tensor:
        """Teacher tokens after block l_a -> the teacher's final tokens (B, 1 + N, D), with the tokens at
        `index` (B, k) replaced by the learnable token + position embedding (None: unpurified)."""
        start = self.cfg.ogfr.agent_block if self.eraser is not None else self.teacher.vit.depth
        if index is not None:
            x = self.eraser(x, index, self.teacher.vit.patch_pos_embed())
        return self.teacher.finish(x, start)

    def teacher_forward(self, images: Tensor, camids: Tensor | None = None) -> TeacherOutput:
        """Holistic images (B,3,H,W) through the teacher: blocks [0, l_a), the erasing, the remaining
        blocks."""
        end = self.cfg.ogfr.agent_block if self.eraser is not None else self.teacher.vit.depth
        x, _ = self.teacher.tokens_until(images, end, camids)
        index, scores = self.erase_index(x)
        return TeacherOutput(x, index, scores, self.purify(x, index))

    def _teacher_logits(self, f_t: Tensor) -> Tensor:
        """The teacher's BNNeck logits without updating its BN statistics (batch statistics in training)."""
        bn = self.necks["T"].bn
        f_bn = F.batch_norm(
            f_t,
            bn.running_mean,
            bn.running_var,
            bn.weight,
            bn.bias,
            training=self.training,
            momentum=0.0,
            eps=bn.eps,
        )
        return self.necks["T"].classifier(f_bn)

    @torch.no_grad()
    def identity_log_prob(self, x: Tensor, indices: list[Tensor | None], pids: Tensor) -> list[Tensor]:
        """log p(y | purified) (B,) of the teacher for each erasing in `indices` (None: unpurified), from the
        same tokens x after block l_a; no gradient, no drop path, BN statistics untouched."""
        with _without_dropout(self.teacher):
            purified = [self.purify(x, index) for index in indices]
        # fp32 logits also under autocast: bf16 rounds them by ~0.02 nat, rewards are ~0.001 nat
        with without_autocast(x):
            logits = [self._teacher_logits(t[:, 0].float()) for t in purified]
        return [z.log_softmax(dim=1).gather(1, pids[:, None])[:, 0] for z in logits]

    # ---- training

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        o = self.cfg.ogfr
        pids, cams = batch["pids"], self.training_cameras(batch)
        terms: dict[str, Tensor] = {}

        # Student: the occluded view x~ through the occlusion-aware ViT.
        pattern = self.pattern_of_type[batch["occ_type"]]  # (B,) pattern index of each view's type
        forced = pattern if o.pattern_train_mixture == "true_type" else None
        depth = self.backbone.vit.depth
        x_s, prediction = self.backbone.tokens_until(batch["occluded"], depth, cams, forced)
        tokens_s = self.backbone.finish(x_s, depth)  # (B, 1 + N, D)
        f_s = tokens_s[:, 0]  # (B, D)
        reid_s, bn_s, logits_s = self.reid_loss("S", f_s, pids)
        terms.update(reid_s)
        terms["acc_S"] = self.accuracy(logits_s, pids)
        occluded = None  # (B, N) bool: patches the occluder covers
        if self.occlusion_head is not None or o.token_distill:
            occluded = occluded_patches(
                batch["occ_mask"], self.backbone.vit, self.cfg.occlusion.mask_threshold
            )
        if prediction is not None:
            terms["pattern"] = o.lambda_pattern * F.cross_entropy(prediction.logits, pattern)
            terms["acc_pattern"] = self.accuracy(prediction.logits, pattern)
            if self.occlusion_head is not None:
                occ_logits = self.occlusion_head(prediction.token_features).squeeze(-1)  # (B, N)
                terms["occlusion"] = o.lambda_occlusion * F.binary_cross_entropy_with_logits(
                    occ_logits, occluded.to(occ_logits.dtype)
                )

        # Teacher: the holistic view x, purified after block l_a.
        teacher = self.teacher_forward(batch["images"], cams)
        index, tokens_t = teacher.index, teacher.tokens
        f_t = tokens_t[:, 0]
        reid_t, bn_t, logits_t = self.reid_loss("T", f_t, pids)
        terms.update(reid_t)
        terms["acc_T"] = self.accuracy(logits_t, pids)
        if index is not None:
            terms.update(self._agent_terms(teacher.x, index, teacher.scores, pids))

        # Reinforced knowledge distillation from the purified teacher (detached) to the student.
        if o.distill:
            pair = (bn_s, bn_t) if o.distill_space == "bn" else (f_s, f_t)
            terms["feat"] = o.lambda_feat * feature_distillation(*pair, o.feature_distill)
            terms["logit"] = o.lambda_logit * logit_distillation(logits_s, logits_t, o.kd_temperature)
        if o.token_distill:
            keep = ~occluded
            if index is not None:
                keep = keep & ~torch.zeros_like(keep).scatter(1, index, True)
            terms["token"] = o.lambda_token * token_distillation(
                tokens_s[:, 1:], tokens_t[:, 1:], keep, o.feature_distill
            )
        return terms

    def _agent_terms(
        self, x_t: Tensor, index: Tensor, scores: Tensor | None, pids: Tensor
    ) -> dict[str, Tensor]:
        """Reward (no grad) of the erasing that was used, and for the agent its REINFORCE term "rl"."""
        n = x_t.shape[1] - 1
        terms = {"erased": x_t.new_full((), index.shape[1] / n, dtype=torch.float32)}  # no host copy
        if scores is None:  # random erasing or a fixed mask: the reward is only logged
            log_p_used, log_p_plain = self.identity_log_prob(x_t, [index, None], pids)
            terms["reward"] = (log_p_used - log_p_plain).mean()
            return terms
        greedy = greedy_tokens(scores, self.num_erased)
        log_p_used, log_p_greedy, log_p_plain = self.identity_log_prob(x_t, [index, greedy, None], pids)
        reward, reward_greedy = log_p_used - log_p_plain, log_p_greedy - log_p_plain  # (B,)
        terms.update(
            reward=reward.mean(),
            reward_greedy=reward_greedy.mean(),
            entropy=policy_entropy(scores).mean().detach(),
        )
        if self.agent_learns:  # self-critical: the advantage over the greedy action
            advantage = reward - reward_greedy  # (B,)
            if self.cfg.ogfr.shuffle_reward:  # control: rewards no longer belong to their images
                advantage = advantage[torch.randperm(len(advantage), generator=self.token_rng)]
            if self.cfg.ogfr.advantage_norm:
                advantage = scaled_advantage(advantage)
            terms["rl"] = reinforce_loss(scores, index, advantage, self.cfg.ogfr.entropy_coef)
        else:
            terms["rl"] = scores.new_zeros(())
        return terms


def _check_blocks(o, depth: int) -> None:
    if o.patterns and o.pattern_block >= depth:
        raise OccreidError(
            f"ogfr.pattern_block={o.pattern_block} must be below the ViT's {depth} blocks (model.vit_depth)"
        )
    if o.fepm != "off":
        if o.agent_block >= depth:
            raise OccreidError(
                f"ogfr.agent_block={o.agent_block} must be below the ViT's {depth} blocks, so the "
                "teacher has blocks left after erasing"
            )
        if o.patterns and o.agent_block < o.pattern_block:
            raise OccreidError(
                f"ogfr.agent_block={o.agent_block} must be >= ogfr.pattern_block="
                f"{o.pattern_block} (the agent reads tokens after the pattern embedding)"
            )
    if o.share == "first" and o.shared_blocks >= depth:
        raise OccreidError(
            f"ogfr.shared_blocks={o.shared_blocks}: at most {depth - 1} of the {depth} blocks can "
            "be shared (the teacher keeps its last block)"
        )


def _check_fixed(o, k: int, num_patches: int) -> None:
    """ogfr.fepm="fixed" needs k = round(erase_ratio x N) distinct positions in ogfr.fixed_positions."""
    if o.fepm != "fixed":
        return
    positions = o.fixed_positions or ()
    if len(set(positions)) != k or len(positions) != k or not all(0 <= p < num_patches for p in positions):
        raise OccreidError(
            f"ogfr.fixed_positions={list(positions)}: ogfr.fepm=fixed needs {k} distinct patch positions "
            f"in 0..{num_patches - 1} (k = round(ogfr.erase_ratio x {num_patches}))"
        )


def _check_groups(groups: tuple[int, ...], num_types: int) -> None:
    if len(groups) != num_types or sorted(set(groups)) != list(range(max(groups) + 1)):
        raise OccreidError(
            f"ogfr.pattern_groups={list(groups)} must give each of the {num_types} occlusion types "
            "a pattern index, using every index 0..P-1"
        )


def build(cfg: Config, num_classes: int) -> OGFR:
    return OGFR(cfg, num_classes)
