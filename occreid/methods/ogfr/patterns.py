"""Occlusion pattern embeddings (docs/ogfr.md section 2): P learnable vectors E (P x D) and a light pattern
head.

    u = MLP(LN(patch tokens))             (B, N, h)  per-token features after block `pattern_block`
    w = softmax(Linear(mean_i u_i))       (B, P)     predicted pattern weights
    tokens += coef * (w @ E)              (B, 1 + N, D), before the next block (SIE-style)

In training the head is supervised with the augmentation's type t (cross-entropy, in the method); at test the
predicted soft mixture is added, so the model needs no side input. The per-token features u also feed the
method's optional per-patch occlusion head (supervised by the patch mask m).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class PatternPrediction:
    logits: Tensor  # (B, P) pattern-head logits
    weights: (
        Tensor  # (B, P) the mixture that was added: softmax(logits), or a one-hot type in teacher forcing
    )
    token_features: Tensor  # (B, N, h) per-patch features u


class OcclusionPatterns(nn.Module):
    def __init__(self, dim: int, num_patterns: int, hidden: int, coef: float) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(num_patterns, dim))  # E: (P, D)
        nn.init.trunc_normal_(self.embeddings, std=0.02)  # as timm's position embedding
        self.token_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU())
        self.classify = nn.Linear(hidden, num_patterns)
        self.coef = coef

    @property
    def num_patterns(self) -> int:
        return self.embeddings.shape[0]

    def forward(self, x: Tensor, pattern: Tensor | None = None) -> tuple[Tensor, PatternPrediction]:
        """x (B, 1 + N, D) -> (x + coef * w @ E, prediction). `pattern` (B,) int64 replaces the predicted
        mixture by that pattern's embedding (teacher forcing); None (always at test): the prediction."""
        u = self.token_mlp(x[:, 1:])  # (B, N, h)
        logits = self.classify(u.mean(dim=1))  # (B, P)
        if pattern is None:
            weights = logits.softmax(dim=-1)
        else:
            weights = nn.functional.one_hot(pattern, self.num_patterns).to(x.dtype)
        mixture = weights @ self.embeddings  # (B, D)
        return x + self.coef * mixture[:, None, :], PatternPrediction(logits, weights, u)
