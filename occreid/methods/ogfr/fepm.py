"""The Feature Erasing and Purification Module, in the teacher (docs/ogfr.md section 4).

A one-step decision per image. State: the teacher's tokens after block l_a, detached. Policy: a small network
scores each patch token from the token and the class token; the action is k = round(rho x N) tokens, sampled
without replacement from softmax(scores) in training (Gumbel top-k, i.e. Plackett-Luce order) and the top-k at
evaluation. The chosen tokens are replaced by a learnable token plus their position embedding (MAE-style) and
the teacher runs its remaining blocks on the purified tokens.

Reward, without gradient (the method computes it): log p(y | purified) - log p(y | unpurified). The agent
learns by REINFORCE with the greedy action's reward as a self-critical baseline and an entropy bonus
(`reinforce_loss`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from occreid.utils.device import without_autocast


def num_erased(erase_ratio: float, num_patches: int) -> int:
    """k = round(rho x N), at least 1 when rho > 0."""
    return max(1, round(erase_ratio * num_patches)) if erase_ratio > 0 else 0


def sample_tokens(scores: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """k indices per row of scores (B, N), drawn without replacement from softmax(scores), in draw order:
    the top-k of scores + Gumbel noise (B, k). The noise comes from `generator` (a CPU generator; None:
    torch's global one), in fp32 whatever the scores' dtype and autocast: bf16 uniforms would cap the noise
    near 5.5 (instead of 16.6) and tie the top-k, a law other than the one whose log-probability REINFORCE
    scores."""
    with without_autocast(scores):
        scores = scores.detach().float()
        u = torch.rand(scores.shape, generator=generator).to(scores.device).clamp_(1e-10, 1.0)
        return (scores - torch.log(-torch.log(u))).topk(k, dim=1).indices


def greedy_tokens(scores: Tensor, k: int) -> Tensor:
    """The k highest-scoring tokens (B, k), best first: the deterministic action at evaluation."""
    return scores.detach().topk(k, dim=1).indices


def random_tokens(
    batch: int, num_patches: int, k: int, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """k uniformly random distinct tokens per image (B, k): FEPM with random erasing (ablation). Drawn from
    `generator` (a CPU generator; None: torch's global one)."""
    return torch.rand(batch, num_patches, generator=generator).to(device).topk(k, dim=1).indices


def fixed_tokens(batch: int, positions: tuple[int, ...], device: torch.device) -> Tensor:
    """The same patch positions (B, k) for every image: FEPM with a fixed mask (control of the agent)."""
    return torch.tensor(positions, dtype=torch.long, device=device).expand(batch, -1)


def log_prob_without_replacement(scores: Tensor, index: Tensor) -> Tensor:
    """log P(index) (B,) of drawing index (B, k) in that order without replacement from
    softmax(scores (B, N))."""
    taken = torch.zeros_like(scores, dtype=torch.bool)
    log_prob = scores.new_zeros(scores.shape[0])
    for j in range(index.shape[1]):
        remaining = scores.masked_fill(taken, float("-inf"))
        log_prob = log_prob + scores.gather(1, index[:, j : j + 1])[:, 0] - remaining.logsumexp(dim=1)
        taken = taken.scatter(1, index[:, j : j + 1], True)
    return log_prob


def policy_entropy(scores: Tensor) -> Tensor:
    """Entropy (B,) of the first draw's distribution softmax(scores)."""
    log_p = scores.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def scaled_advantage(advantage: Tensor, eps: float = 1e-8) -> Tensor:
    """advantage (B,) / its batch standard deviation: the policy gradient's size no longer depends on the
    reward's scale; the sign (better or worse than the greedy action) is kept."""
    if advantage.numel() < 2:
        return advantage
    return advantage / (advantage.std() + eps)


def reinforce_loss(scores: Tensor, index: Tensor, advantage: Tensor, entropy_coef: float) -> Tensor:
    """-E[A log pi(a)] - entropy_coef * H(pi): the agent's loss; the advantage A (B,), r - r_greedy or that
    scaled (`scaled_advantage`), is detached."""
    log_prob = log_prob_without_replacement(scores, index)  # (B,)
    return -(advantage.detach() * log_prob).mean() - entropy_coef * policy_entropy(scores).mean()


class PurificationAgent(nn.Module):
    """The policy: score_i = MLP([LN(token_i), LN(class token)]) for each patch token, from detached tokens.
    The output layer starts at zero, so the untrained agent samples uniformly (random erasing)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[-1].weight)
        nn.init.zeros_(self.score[-1].bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, 1 + N, D) -> fp32 scores (B, N), also under autocast (they are the policy's logits);
        no gradient reaches the tokens."""
        with without_autocast(tokens):
            state = self.norm(tokens.detach().float())
            patches, cls = state[:, 1:], state[:, :1].expand(-1, state.shape[1] - 1, -1)
            return self.score(torch.cat([patches, cls], dim=-1)).squeeze(-1)  # (B, N)


class TokenEraser(nn.Module):
    """Replaces chosen patch tokens by a learnable token plus their position embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))  # (1, 1, D)
        nn.init.normal_(self.token, std=0.02)  # as MAE's mask token

    def forward(self, x: Tensor, index: Tensor, patch_pos_embed: Tensor) -> Tensor:
        """x (B, 1 + N, D), index (B, k) into the N patch tokens, patch_pos_embed (1, N, D) -> purified x."""
        pos = patch_pos_embed.expand(x.shape[0], -1, -1).gather(
            1, index[..., None].expand(-1, -1, x.shape[-1])
        )  # (B, k, D)
        patches = x[:, 1:].scatter(1, index[..., None].expand(-1, -1, x.shape[-1]), self.token + pos)
        return torch.cat([x[:, :1], patches], dim=1)
