"""The report's pictures that are not ranked lists: training curves from metrics.jsonl, and the CNNs'
feature-response maps (channel mean of F over the image; the PGFL-KD paper's Figures 1 and 4)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from occreid.config import Config


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (lines that are not JSON objects, e.g. a line cut by a crash, are
    skipped)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def training_curves(records: list[dict], out: Path, title: str = "") -> None:
    """The total training loss per logged step (log scale) and, where the run evaluated, mAP and Rank-1 per
    epoch, side by side."""
    plt = _pyplot()
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot([r["step"] for r in train], [r["loss"] for r in train], marker="." if len(train) < 30 else None)
    left.set(
        xlabel="step", ylabel="total training loss", yscale="log", title=f"{title} training loss".strip()
    )
    if evals:
        epochs = [r["epoch"] for r in evals]
        right.plot(epochs, [100 * r["mAP"] for r in evals], marker="o", label="mAP")
        right.plot(epochs, [100 * r.get("rank1", float("nan")) for r in evals], marker="s", label="Rank-1")
        right.legend()
    else:
        right.text(0.5, 0.5, "not evaluated", ha="center", va="center", transform=right.transAxes)
    right.set(xlabel="epoch", ylabel="%", title="evaluation", ylim=(0, 100))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def loss_curves(runs: dict[str, list[dict]], out: Path) -> None:
    """Several runs' total training loss per logged step in one plot (the demo's comparison)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, records in runs.items():
        train = [r for r in records if r.get("kind") == "train"]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label=name)
    ax.set(xlabel="step", ylabel="total training loss", yscale="log", title="training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


@torch.inference_mode()
def response_maps(models: dict[str, nn.Module], cfg: Config, paths: list[str], out: Path) -> None:
    """Channel-mean activation of F over each image, a row per CNN model (`forward_features`) under a row of
    the images. A ViT's tokens are layer-normalised, so their channel mean says nothing: draw its attention
    instead (occreid.evaluation.token_maps)."""
    from occreid.data.images import read_image
    from occreid.data.transforms import build_transforms

    plt = _pyplot()
    transform = build_transforms(cfg.data, train=False)
    h, w = cfg.data.image_size
    rows = len(models) + 1
    fig, axes = plt.subplots(rows, len(paths), figsize=(1.3 * len(paths), 2.6 * rows), squeeze=False)
    for col, path in enumerate(paths):
        image = read_image(path)
        tensor, _ = transform(image, None)
        axes[0, col].imshow(image.resize((w, h)))
        for row, model in enumerate(models.values(), start=1):
            fmap = model.forward_features(tensor[None]).float().mean(1, keepdim=True)  # (1, 1, h', w')
            fmap = nn.functional.interpolate(fmap, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            fmap = (fmap - fmap.min()) / (fmap.max() - fmap.min() + 1e-8)
            axes[row, col].imshow(image.resize((w, h)))
            axes[row, col].imshow(fmap.numpy(), cmap="jet", alpha=0.5)
        for row in range(rows):
            axes[row, col].axis("off")
    for row, name in enumerate(["image", *models]):
        axes[row, 0].set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
