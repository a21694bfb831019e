"""Diagnostics behind the accuracy study: why PGFL-KD's f_G gains little over the baseline on SynthOcc.

    python benchmarks/diag_pgfl_kd.py terms  DATA_ROOT [PGFL_KD_CHECKPOINT]   # at ImageNet init or trained
    python benchmarks/diag_pgfl_kd.py ranked DATA_ROOT SEED CHECKPOINT [CHECKPOINT ...]

`terms`: on two training batches of the demo's PGFL-KD (configs/demo/pgfl_kd.yaml), every loss term's value,
the norm of its gradient on the backbone's parameters and that gradient's cosine with the baseline's own terms
(id_G + tri_G); also Eq. 4 as written (f_E = f_F + f_G, f_E detached): its value against mean(f_F^2) and its
gradient on f_G against -2 f_F / (B C), and three non-degenerate forms of it for comparison (not used in
training): ||f_G - sg(f_F)||^2, ||f_G/|f_G| - sg(f_E/|f_E|)||^2 and ||BN_G(f_G) - sg(BN_E(f_E))||^2,
each x 0.25.

`ranked`: for each occluded query of SynthOcc (seed SEED) the deployed model's top-1 cross-camera match; when
it is wrong, whether it is from the query's camera (against the gallery's share of that camera) and which
identity attributes separate the two people (SynthOcc's families: siblings differ in 1-2 part-local
attributes).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from occreid.config import load_config
from occreid.data.datasets import load_dataset


def terms(root: str, checkpoint: str | None) -> None:
    from occreid.data.loaders import build_train_loader
    from occreid.data.splits import keypoints_for
    from occreid.methods import build_model
    from occreid.modeling.losses import consistency_loss

    cfg = load_config("configs/demo/pgfl_kd.yaml", [f"data.root={root}", "data.num_workers=0"])
    dataset = load_dataset("synthocc", root)
    torch.manual_seed(0)
    method = build_model(cfg, dataset.num_train_pids)
    if checkpoint:
        method.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    loader = build_train_loader(
        cfg, dataset.train, keypoints_for(dataset, dataset.train, None), rank=0, world_size=1, seed=0
    )
    params = [p for p in method.backbone.parameters() if p.requires_grad]
    method.train()
    for b, batch in zip(range(2), loader):
        f = method.branches(batch["images"], batch["keypoints"])
        out = method.training_step(batch)
        values = {k: v for k, v in out.items() if k not in (*method.metric_names, "acc")}
        f_g, f_e, f_f = f["f_G"], f["f_E"], f["f_F"].detach()
        values["cl as f_G -> sg(f_F)"] = 0.25 * consistency_loss(f_g, f_f)
        values["cl normalised"] = (
            0.25 * (F.normalize(f_g, dim=1) - F.normalize(f_e.detach(), dim=1)).pow(2).sum(1).mean()
        )
        values["cl in BNNeck space"] = 0.25 * consistency_loss(
            method.necks["G"].bn(f_g), method.necks["E"].bn(f_e)
        )
        grads = {}
        for name, value in values.items():
            g = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            grads[name] = torch.cat(
                [x.flatten() if x is not None else torch.zeros(p.numel()) for x, p in zip(g, params)]
            )
        own = grads["id_G"] + grads["tri_G"]
        print(f"batch {b}: term, value, |gradient on the backbone|, cosine with the gradient of id_G + tri_G")
        for name, value in values.items():
            print(
                f"  {name:24s} {value.item():9.4f}  {grads[name].norm().item():10.3e}  "
                f"{F.cosine_similarity(grads[name], own, dim=0).item():+.3f}"
            )
        # Eq. 4 as written: value and gradient do not depend on f_G beyond sg(f_E) = f_F + f_G.
        leaf = f_g.detach().requires_grad_()
        cl = consistency_loss(leaf, f_f + leaf.detach())
        (grad,) = torch.autograd.grad(cl, leaf)
        bsz, chans = leaf.shape
        print(
            f"  Eq. 4 unweighted {cl.item():.6f} vs mean(f_F^2) {f_f.pow(2).mean().item():.6f}; gradient on "
            "f_G equals -2 f_F/(B C): "
            f"{torch.allclose(grad, -2 * f_f / (bsz * chans), rtol=1e-5, atol=1e-10)}; min f_F "
            f"{f_f.min().item():.3f}"
        )
        print(
            f"  |f_G| {f_g.norm(dim=1).mean():.1f}  |f_F| {f_f.norm(dim=1).mean():.1f}  "
            f"|f_P| {f['f_P'].norm(dim=1).mean():.1f}  cos(f_G, f_F) "
            f"{F.cosine_similarity(f_g, f_f).mean():.3f}"
        )


@torch.inference_mode()
def ranked(root: str, seed: int, checkpoints: list[str]) -> None:
    from occreid.data.synthocc.generate import PRESETS, plan_dataset
    from occreid.data.synthocc.identity import attribute_difference
    from occreid.evaluation.evaluate import evaluate_features, extract_features
    from occreid.inference.models import load_deployed_model

    identities, _ = plan_dataset(PRESETS["default"], seed, "occluded")
    dataset = load_dataset("synthocc", root)
    notes = json.loads((Path(root) / "annotations.json").read_text())
    qp, gp = np.array([q.pid for q in dataset.query]), np.array([g.pid for g in dataset.gallery])
    qc, gc = np.array([q.camid for q in dataset.query]), np.array([g.camid for g in dataset.gallery])
    for checkpoint in checkpoints:
        model, cfg = load_deployed_model(checkpoint)
        qf = extract_features(model, dataset.query, cfg, torch.device("cpu"), desc="query")
        gf = extract_features(model, dataset.gallery, cfg, torch.device("cpu"), desc="gallery")
        out = evaluate_features(qf, gf, dataset.query, dataset.gallery, cfg)
        wrong = same_cam = 0
        n_diff, attrs, by_type = collections.Counter(), collections.Counter(), collections.defaultdict(list)
        cam_share = []
        for i, query in enumerate(dataset.query):
            keep = ~((gp == qp[i]) & (gc == qc[i]))  # the protocol drops same-identity same-camera images
            order = np.argsort(out.distmat[i][keep])
            top_pid, top_cam = gp[keep][order[0]], gc[keep][order[0]]
            cam_share.append(np.mean(gc[keep] == qc[i]))
            note = notes[f"query/{query.path.rsplit('/', 1)[-1]}"]
            by_type[note["occluder_type"]].append(top_pid == qp[i])
            if top_pid != qp[i]:
                wrong += 1
                same_cam += int(top_cam == qc[i])
                diff = attribute_difference(identities[qp[i] - 1], identities[top_pid - 1])
                n_diff[min(len(diff), 4)] += 1
                attrs.update(diff)
        print(
            f"{checkpoint}: mAP {out.result.mAP:.3f} Rank-1 {out.result.cmc[0]:.3f}; wrong top-1 {wrong} of "
            f"{len(qp)}; from the query's camera {same_cam} ({same_cam / max(wrong, 1):.0%}, the gallery's "
            f"share of that camera {np.mean(cam_share):.0%})"
        )
        print(
            "  attributes separating the query's identity from the wrong top-1's (4 = 4 or more):",
            dict(sorted(n_diff.items())),
        )
        print("  most often differing:", attrs.most_common(8))
        print(
            "  Rank-1 by occluder type:",
            {k: f"{np.mean(v):.2f} (n={len(v)})" for k, v in sorted(by_type.items())},
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("terms")
    t.add_argument("root")
    t.add_argument("checkpoint", nargs="?")
    r = sub.add_parser("ranked")
    r.add_argument("root")
    r.add_argument("seed", type=int)
    r.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    if args.command == "terms":
        terms(args.root, args.checkpoint)
    else:
        ranked(args.root, args.seed, args.checkpoints)


if __name__ == "__main__":
    main()
