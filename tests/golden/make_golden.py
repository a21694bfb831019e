"""Golden numbers of a short fixed-seed training run of every method (tests/test_golden_runs.py checks them).

Each of the four CPU-demo models (`configs/demo/<key>.yaml`) trains for 2 epochs of 3 steps at 64 x 32 on a
small SynthOcc and is evaluated on its query/gallery; every logged training record (each loss term, the loss,
the gradient norm and the learning rate of every step) and the final evaluation are kept exactly.

    python tests/golden/make_golden.py     # rewrites tests/golden/golden_runs.json

Regenerate only for a change that is meant to change training, and say why in its commit. The numbers are
pinned to the torch version that wrote them; the test skips on another one.

Only stable entry points are used (occreid.config.load_config, occreid.engine.trainer.train,
occreid.data.synthocc.generate), and only overrides of generic keys, so the script keeps working while the
package's insides move.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
GOLDEN_PATH = HERE / "golden_runs.json"
METHODS = ("baseline", "pgfl_kd", "vit_baseline", "ogfr")

# The SynthOcc every run trains and evaluates on: the small preset (40 training identities, 60 queries, 180
# gallery images), rendered in-process (one worker) so it is the same on every machine.
SYNTHOCC = {"preset": "small", "seed": 0, "protocol": "occluded"}

# What makes the demo tiny; every key is a generic one (no method switches). The demo's own settings stay:
# ImageNet-pretrained MobileNetV2 (the CNNs) / hybrid ViT stem, Adam lr 1e-3, channels_last, seed 0.
TINY_OVERRIDES = [
    "data.image_size=[64,32]",
    "data.p=2",
    "data.k=2",
    "data.num_workers=0",
    "train.epochs=2",
    "train.steps_per_epoch=3",
    "train.warmup_epochs=1",  # epoch 1 at lr x 0.01, epoch 2 at lr: both halves of the schedule
    "train.log_period=1",
    "train.eval_period=0",
    "train.device=cpu",
    "eval.batch_size=64",
]
METHOD_OVERRIDES = {
    "baseline": [],
    "pgfl_kd": [],
    "vit_baseline": [],
    "ogfr": ["ogfr.agent_warmup_epochs=1"],  # the agent learns in epoch 2
}
TIME_FIELDS = ("data_time", "time", "batch_time", "iter_time", "step_time", "eta", "elapsed")


def make_synthocc(root: Path) -> Path:
    """Render the golden runs' SynthOcc to `root` (a new or empty folder) and return it."""
    from occreid.data.synthocc import generate

    generate(root, workers=1, progress=False, **SYNTHOCC)
    return root


def overrides_for(method_key: str, synth_root: Path | str, out_dir: Path | str) -> list[str]:
    return [
        "data.dataset=synthocc",
        f"data.root={synth_root}",
        *TINY_OVERRIDES,
        *METHOD_OVERRIDES[method_key],
        f"train.output_dir={out_dir}",
    ]


def demo_config_path(method_key: str) -> Path | str:
    """The demo config of the occreid that is imported (not a checkout's `configs/` link next to the cwd);
    where the package keeps it elsewhere, load_config's own lookup of `configs/demo/<key>.yaml`."""
    import occreid

    packaged = Path(occreid.__file__).resolve().parent / "configs" / "demo" / f"{method_key}.yaml"
    return packaged if packaged.is_file() else f"configs/demo/{method_key}.yaml"


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in TIME_FIELDS and not k.endswith("_time")}


def run_golden(method_key: str, synth_root: Path, out_dir: Path) -> dict:
    """Train `method_key`'s tiny demo run on the SynthOcc at `synth_root` into `out_dir/<method_key>` (which
    must not hold a run) on one CPU thread; return its exact numbers: the settings that define the run, every
    training record of metrics.jsonl and the final evaluation of eval.json (time fields dropped)."""
    from occreid.config import load_config
    from occreid.engine.trainer import train

    run_dir = Path(out_dir) / method_key
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(demo_config_path(method_key), overrides_for(method_key, synth_root, run_dir))
        result = train(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluation = json.loads((result.run_dir / "eval.json").read_text())
    settings = json.dumps(evaluation.get("settings"))
    if str(synth_root) in settings or str(out_dir) in settings:
        evaluation.pop("settings")  # paths of this machine (today's settings hold none)
    return {
        "config": f"configs/demo/{method_key}.yaml",
        "overrides": overrides_for(method_key, "<synth_root>", "<out_dir>"),
        "train": [_clean(r) for r in records if r.get("kind") == "train"],
        "eval": _clean(evaluation),
    }


def main() -> None:
    import occreid

    print(f"occreid from {Path(occreid.__file__).parent}, torch {torch.__version__}", file=sys.stderr)
    torch.set_num_threads(1)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="occreid-golden-") as tmp:
        synth_root = make_synthocc(Path(tmp) / "synthocc")
        for key in METHODS:
            runs[key] = run_golden(key, synth_root, Path(tmp) / "runs")
            print(f"{key}: {len(runs[key]['train'])} steps, mAP {runs[key]['eval']['mAP']}", file=sys.stderr)
    GOLDEN_PATH.write_text(json.dumps({"torch": torch.__version__, "runs": runs}, indent=1) + "\n")
    print(f"wrote {GOLDEN_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
