"""Query x gallery distances: squared Euclidean and cosine, numpy or torch in, chunked so memory stays bounded.

d_euc(q, g) = ||q||^2 + ||g||^2 - 2 q.g     (squared Euclidean, clamped at 0, as torchreid computes it)
d_cos(q, g) = 1 - q.g / (||q|| ||g||)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from occreid.errors import OccreidError

Metric = Literal["euclidean", "cosine"]


def _to_tensor(x: Any, name: str):
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2:
        raise OccreidError(f"{name} must be a (N, D) feature matrix, got shape {tuple(t.shape)}")
    return (
        t.detach().float()
        if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16)
        else t.detach()
    )


def compute_distance(
    qf: Any, gf: Any, metric: Metric = "euclidean", normalize: bool = False, chunk_size: int = 4096
) -> Any:
    """(Q, G) distance matrix between query features (Q, D) and gallery features (G, D).

    Args:
        qf, gf: numpy arrays or torch tensors (any device; the result stays on qf's device).
        metric: "euclidean" (squared Euclidean distance) or "cosine" (1 - cosine similarity).
        normalize: L2-normalise the features first (then euclidean = 2 * cosine).
        chunk_size: query rows computed at once (bounds the temporary memory).

    Returns:
        The same kind as `qf` (numpy in -> numpy out, torch in -> torch out), float32 (float64 if both inputs are).
    """
    import torch

    if metric not in ("euclidean", "cosine"):
        raise OccreidError(f"unknown distance metric {metric!r}; use 'euclidean' or 'cosine'")
    numpy_out = not isinstance(qf, torch.Tensor)
    q, g = _to_tensor(qf, "query features"), _to_tensor(gf, "gallery features")
    if q.shape[1] != g.shape[1]:
        raise OccreidError(f"query features are {q.shape[1]}-d but gallery features are {g.shape[1]}-d")
    dtype = torch.float64 if (q.dtype == torch.float64 and g.dtype == torch.float64) else torch.float32
    q, g = q.to(dtype), g.to(device=q.device, dtype=dtype)
    if normalize or metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
    out = torch.empty((q.shape[0], g.shape[0]), dtype=dtype, device=q.device)
    g_sq = g.pow(2).sum(dim=1)
    for s in range(0, q.shape[0], chunk_size):
        block = q[s : s + chunk_size]
        if metric == "euclidean":
            d = torch.addmm(g_sq.unsqueeze(0), block, g.T, beta=1.0, alpha=-2.0)
            d.add_(block.pow(2).sum(dim=1, keepdim=True)).clamp_(min=0)
        else:
            d = 1.0 - block @ g.T
        out[s : s + chunk_size] = d
    return out.cpu().numpy() if numpy_out else out
