"""OGFR's config section, `ogfr.*`: every choice docs/ogfr.md marks as ours is a field here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from occreid.config_fields import LIST_AS_TUPLE, Section


class OGFRConfig(Section):
    """OGFR (occreid.methods.ogfr; docs/ogfr.md). Every choice docs/ogfr.md marks as ours is a field here.

    Ablation switches (docs/ogfr.md section 7): `distill`, `patterns`, `fepm`, `erase_ratio`,
    `pattern_groups`, `share`.
    """

    # ---- teacher and student (docs/ogfr.md section 3)
    # What the holistic teacher shares with the occluded student: nothing, the patch/position/camera embedding
    # and the first `shared_blocks` blocks ("first"), or everything but the last block and the final norm.
    share: Literal["none", "first", "all_but_last"] = "first"
    shared_blocks: int = Field(2, ge=0)  # share="first" only
    # ---- occlusion pattern embeddings (docs/ogfr.md section 2)
    patterns: bool = True
    # Pattern index of each occlusion type (length len(occlusion.types), every index 0..P-1 used); None: one
    # pattern per type (P = len(occlusion.types)).
    pattern_groups: Annotated[tuple[int, ...] | None, LIST_AS_TUPLE] = None
    pattern_block: int = Field(1, ge=1)  # the head reads the tokens after blocks [0, pattern_block)
    pattern_hidden: int = Field(64, ge=1)  # per-token width of the light head
    pattern_coef: float = 1.0  # tokens += pattern_coef * sum_p w_p E_p (SIE-style)
    # The mixture added in training: the head's prediction ("predicted", as at test) or the true type's
    # embedding ("true_type", teacher forcing). Test time always uses the prediction.
    pattern_train_mixture: Literal["predicted", "true_type"] = "predicted"
    lambda_pattern: float = 1.0
    occlusion_head: bool = False  # per-patch occlusion head on the pattern head's token features, BCE with m
    lambda_occlusion: float = 1.0
    # ---- feature erasing and purification module (docs/ogfr.md section 4)
    # "random": k uniformly random tokens (ablation); "fixed": the same k positions in every image,
    # `fixed_positions` (control: an agent that learnt only a position prior would match it)
    fepm: Literal["agent", "random", "fixed", "off"] = "agent"
    fixed_positions: Annotated[tuple[int, ...] | None, LIST_AS_TUPLE] = None  # patch indices, fepm="fixed"
    agent_block: int = Field(2, ge=1)  # the agent reads the teacher's tokens after blocks [0, agent_block)
    erase_ratio: float = Field(0.2, ge=0.0, lt=1.0)  # rho: k = round(rho x N) tokens erased
    agent_hidden: int = Field(128, ge=1)
    agent_lr: float = Field(1e-3, gt=0.0)  # Adam, the agent's own optimiser (no schedule)
    agent_warmup_epochs: int = Field(
        5, ge=0
    )  # epochs of random erasing (the untrained agent) before it learns
    entropy_coef: float = Field(0.01, ge=0.0)
    # Divide the self-critical advantages r - r_greedy by their batch standard deviation before REINFORCE:
    # rewards are ~1e-3 nats at the CPU scale, too small for the raw policy gradient to move the policy
    # (docs/models.md, "the agent").
    advantage_norm: bool = True
    # Control: permute the advantages across the batch before REINFORCE, so a reward no longer belongs to the
    # image whose erasing earned it; an agent that uses the image should then do worse.
    shuffle_reward: bool = False
    # ---- reinforced knowledge distillation (docs/ogfr.md section 5)
    distill: bool = True  # feature + logit distillation from the purified teacher
    feature_distill: Literal["cosine", "mse"] = "cosine"
    # Which global features: after the BNNeck's BN ("bn": per-channel standardised, the ID classifier's input)
    # or the raw class tokens ("raw"; these share a large common component: cosine ~0.9995 between any two
    # images in a trained CPU-scale run, which makes a distance between them nearly vacuous).
    distill_space: Literal["bn", "raw"] = "bn"
    lambda_feat: float = 1.0
    lambda_logit: float = 1.0

    @model_validator(mode="after")
    def _erasing_erases(self) -> OGFRConfig:
        if self.fepm != "off" and self.erase_ratio == 0:
            raise ValueError(
                f"ogfr.erase_ratio=0 erases no token, which would switch ogfr.fepm={self.fepm} off without a "
                "word; set ogfr.fepm=off to train without erasing, or an erase_ratio above 0"
            )
        return self

    kd_temperature: float = Field(4.0, gt=0.0)
    token_distill: bool = False  # patch tokens the occluder does not cover (and the agent kept)
    lambda_token: float = 1.0


CONFIG = OGFRConfig
