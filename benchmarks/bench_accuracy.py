"""Accuracy study: ablation rows and fair controls on SynthOcc, over N seeds, from the demo's pretrained
backbones.

Each seed is a fresh SynthOcc (default preset, occluded protocol, generated with that seed) and that seed for
training; every row of a seed gets the same data, seed and schedule (occreid/configs/demo/base.yaml:
MobileNetV2 from ImageNet, 16 x 18 steps, 128 x 64). f_G is the test feature of every row (the paper's Table
6); the pose-at-test features f_P, f_V, f_F, f_E of the rows that have them are recorded beside it (Table 8).

    python benchmarks/bench_accuracy.py                              # Table 6 rows 1-6, seeds 0 1 2
    python benchmarks/bench_accuracy.py --rows table6_row1_baseline table6_row6_pgfl_kd --seeds 0 1 2 3 4
    python benchmarks/bench_accuracy.py --rows "ogfr=configs/demo/ogfr.yaml" table6_row1_baseline
    python benchmarks/bench_accuracy.py --rows \
        "pgfl_kd_sum=configs/demo/pgfl_kd.yaml,pgfl_kd.cl_reduction=sum"

    python benchmarks/bench_accuracy.py --rows vit_baseline ogfr_row1_two_view ogfr_row2_distill \
        ogfr_row3_patterns ogfr_row4_fepm_random ogfr_row5_fepm_agent --train-occluders vehicle,pole,board

    python benchmarks/bench_accuracy.py --name bench_accuracy_controls --seeds 0 1 2 3 4 --no-pose-at-test \
        --rows vit_baseline vit_control_occluded vit_control_both_views vit_control_occluded_long \
        ogfr_row4_fepm_random ogfr_row5_fepm_agent ogfr_fixed_mask      # OGFR against its fair controls

A row is the name of an ablation preset (occreid/methods/<method>/presets/<name>.yaml: PGFL-KD's Table 6 and 7
switches, OGFR's docs/ogfr.md section 7 switches) on its method's demo config (configs/demo/<method>.yaml; for
OGFR the CPU-scale hybrid ViT, whose teacher shares the demo's number of blocks), `vit_baseline`
(configs/demo/vit_baseline.yaml), or
a named row (NAMED_ROWS: the fair control with 2.2x the steps, OGFR with a fixed mask of the same seed's
agent's most frequent positions, OGFR without random erasing of the teacher's view), or
`label=CONFIG[,key=value,...]`: a config file (packaged or a path) with overrides. With `--train-occluders`,
every seed's SynthOcc is the unseen-occluder split (training images occluded only by those types, queries only
by the others) and the paired-view augmentation holds out every source of the query types (their SynthOcc
renderers, and the "person" type itself when people are unseen), so the query occluders are unseen by every
row; the per-type table then separates seen from unseen types. Finished (row, seed) runs are kept in
<out>/results.json and not run again, so an interrupted study continues where it stopped (use a new --out, or
--fresh, to start over). To use several cores, run studies side by side with one thread each
(`OMP_NUM_THREADS=1`) and separate --out folders, then `--out ALL --merge OUT1 OUT2 ... --report` prints one
table over them (two different runs of one row and seed are refused). Prints mean +- std over seeds (Rank-1,
mAP, mINP), for every pair of rows the paired 95% t-interval over seeds and a bootstrap over seeds x queries
(study_stats.py), and for agent rows what the agent erases (occreid.evaluation.agent_analysis); writes the
JSON (every record with its per-query values and provenance) and a markdown report to benchmarks/results/
(--name).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from occreid.apps.demo.run import _make_data, pose_at_test
from occreid.config import load_config
from occreid.engine.trainer import train
from occreid.methods import presets
from occreid.methods.pgfl_kd import POSE_FEATURES

sys.path.insert(0, str(Path(__file__).parent))
from study_stats import pair_lines  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TABLE6 = [
    f"table6_row{i}_{s}"
    for i, s in enumerate(["baseline", "sab", "sab_i", "sab_im", "sab_im_feb", "pgfl_kd"], start=1)
]
PAPER = {  # Occluded-Duke, Table 6 (Rank-1, mAP)
    "table6_row1_baseline": (52.7, 45.9),
    "table6_row2_sab": (54.0, 46.5),
    "table6_row3_sab_i": (56.4, 48.1),
    "table6_row4_sab_im": (59.4, 52.0),
    "table6_row5_sab_im_feb": (61.2, 52.1),
    "table6_row6_pgfl_kd": (63.0, 54.1),
}


# Rows that are a config plus settings rather than one preset (docs/results.md): the fair controls of OGFR and
# the controls of its agent. "ogfr_fixed_mask" also gets ogfr.fixed_positions from the same seed's agent row.
NAMED_ROWS = {  # label -> (demo config, preset or None, overrides)
    "vit_baseline": ("vit_baseline", None, []),
    # control (c): control (a) with about OGFR's compute, 2.2x the steps (40 instead of 18 per epoch)
    "vit_control_occluded_long": ("vit_baseline", "vit_control_occluded", ["train.steps_per_epoch=40"]),
    "ogfr_student_only_erasing": ("ogfr", "ogfr_row5_fepm_agent", ["occlusion.erasing_views=student_only"]),
    "ogfr_fixed_mask": ("ogfr", "ogfr_row5_fepm_agent", ["ogfr.fepm=fixed"]),
}
AGENT_ROW = "ogfr_row5_fepm_agent"  # whose analysis gives each seed's fixed mask


def parse_row(spec: str) -> tuple[str, list[str], list[str]]:
    """A row spec -> (label, config files merged in order, overrides)."""
    if spec in NAMED_ROWS:
        demo, preset, overrides = NAMED_ROWS[spec]
        return spec, [f"configs/demo/{demo}.yaml", *([str(presets()[preset])] if preset else [])], overrides
    if "=" not in spec.split(",")[0]:
        preset = presets().get(spec)
        if preset is None:
            raise SystemExit(
                f"--rows: {spec!r} is neither a preset ({', '.join(presets())}), a named row "
                f"({', '.join(NAMED_ROWS)}) nor label=CONFIG[,key=value,...]"
            )
        # the preset's switches on the demo config of its method (occreid/methods/<method>/presets/); the
        # ViT baseline's controls on the ViT baseline's
        method = preset.parent.parent.name
        demo = "vit_baseline" if spec.startswith("vit_") else method
        return spec, [f"configs/demo/{demo}.yaml", str(preset)], []
    label, rest = spec.split("=", 1)
    config, *overrides = rest.split(",")
    return label, [config], overrides


def _stats(values: list[float]) -> str:
    """mean ± std in percent; a single value alone (one seed has no spread)."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def table(results: dict, labels: list[str], seeds: list[int]) -> str:
    lines = ["| row | test feature | Rank-1 | mAP | mINP | mAP per seed | paper R1 / mAP |", "|" + "---|" * 7]
    for label in labels:
        runs = [results[label][str(s)] for s in seeds if str(s) in results.get(label, {})]
        if not runs:
            continue
        paper = PAPER.get(label)
        paper_txt = f"{paper[0]} / {paper[1]}" if paper else "-"
        features = ["f_G"] + [f for f in POSE_FEATURES if f in runs[0].get("pose_at_test", {})]
        for feature in features:
            recs = [r if feature == "f_G" else r["pose_at_test"][feature] for r in runs]
            per_seed = " ".join(f"{100 * r['mAP']:.1f}" for r in recs) + (
                f" ({len(recs)} of {len(seeds)} seeds)" if len(recs) < len(seeds) else ""
            )
            name = label if feature == "f_G" else f"  {label}"
            kind = "f_G" if feature == "f_G" else f"{feature} (pose at test)"
            lines.append(
                f"| {name} | {kind} | {_stats([r['rank1'] for r in recs])} | "
                f"{_stats([r['mAP'] for r in recs])} | {_stats([r['mINP'] for r in recs])} | {per_seed} | "
                f"{paper_txt if feature == 'f_G' else ''} |"
            )
    return "\n".join(lines)


def type_table(results: dict, labels: list[str], seeds: list[int], unseen: set[str]) -> str:
    """f_G mAP / Rank-1 (mean over seeds) of each row on each occluder type's queries; unseen types marked."""
    types = sorted(
        {t for label in labels for r in results.get(label, {}).values() for t in r.get("per_type", {})}
    )
    if not types:
        return ""
    head = [f"{t} (unseen)" if t in unseen else t for t in types]
    lines = ["| row | " + " | ".join(head) + " |", "|---|" + "---:|" * len(types)]
    for label in labels:
        runs = [results[label][str(s)] for s in seeds if str(s) in results.get(label, {})]
        cells = []
        for t in types:
            recs = [r["per_type"][t] for r in runs if t in r.get("per_type", {})]
            cells.append(
                f"{_stats([r['mAP'] for r in recs])} / {_stats([r['rank1'] for r in recs])}" if recs else "-"
            )
        if runs:
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains(results: dict, labels: list[str], seeds: list[int], previous: bool = False) -> list[str]:
    """Each row's f_G mAP minus the first row's (`previous`: the row above it, an ablation ladder's step), per
    seed (same data and seed: a paired difference)."""
    out = []
    for i, label in enumerate(labels[1:], start=1):
        reference = labels[i - 1] if previous else labels[0]
        pairs = [
            (s, results[label][str(s)]["mAP"] - results[reference][str(s)]["mAP"])
            for s in seeds
            if str(s) in results.get(label, {}) and str(s) in results.get(reference, {})
        ]
        if pairs:
            out.append(
                f"- {label} - {reference}: mAP {_stats([d for _, d in pairs])} (per seed: "
                + ", ".join(f"{s}: {100 * d:+.1f}" for s, d in pairs)
                + ")"
            )
    return out


def agent_table(results: dict, labels: list[str], seeds: list[int]) -> str:
    """What each agent row's agent erases on the teacher's holistic view (occreid.evaluation.agent_analysis),
    mean over seeds: the share of erased tokens per region for its greedy action, a sampled action and
    uniform random erasing, and how image-dependent the greedy action is."""
    from occreid.evaluation.agent_analysis import REGIONS

    head = "| row | action | " + " | ".join(REGIONS) + " | distinct sets / images | Jaccard to fixed mask |"
    lines = [head, "|---|---|" + "---:|" * (len(REGIONS) + 2)]
    for label in labels:
        runs = _agent_runs(results, label, seeds)
        if not runs:
            continue
        for action in ("greedy", "sampled", "random"):
            shares = " | ".join(f"{100 * statistics.fmean(r[action][g] for r in runs):.1f}" for g in REGIONS)
            extra = " | - | -"
            if action == "greedy":
                distinct = statistics.fmean(r["distinct_greedy_sets"] / r["images"] for r in runs)
                jaccard = statistics.fmean(r["mean_jaccard_to_fixed"] for r in runs)
                extra = f" | {distinct:.2f} | {jaccard:.2f}"
            lines.append(f"| {label} ({len(runs)} seeds) | {action} | {shares}{extra} |")
    if len(lines) <= 2:
        return ""
    return "\n".join(lines + ["", *position_grids(results, labels, seeds)])


def _agent_runs(results: dict, label: str, seeds: list[int]) -> list[dict]:
    """The agent analyses of `label`'s runs over `seeds` (runs without one are skipped)."""
    by_seed = results.get(label, {})
    return [by_seed[str(s)]["agent_analysis"] for s in seeds if "agent_analysis" in by_seed.get(str(s), {})]


def position_grids(results: dict, labels: list[str], seeds: list[int]) -> list[str]:
    """Per agent row: how often its greedy action erases each patch position (percent of images, mean over
    seeds), as the patch grid (rows top to bottom); uniform random erasing: k / N everywhere."""
    out = []
    for label in labels:
        runs = _agent_runs(results, label, seeds)
        if not runs:
            continue
        rows, cols = runs[0]["grid"]
        freq = [statistics.fmean(r["position_frequency"][i] for r in runs) for i in range(rows * cols)]
        uniform = 100 * runs[0]["k"] / runs[0]["num_patches"]
        out += [
            f"{label}: greedy erasing frequency per position, percent (uniform: {uniform:.0f}):",
            "",
            "```",
        ]
        out += [" ".join(f"{100 * freq[r * cols + c]:5.1f}" for c in range(cols)) for r in range(rows)]
        out += ["```", ""]
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--rows", nargs="+", default=TABLE6, help="preset names, named rows or label=CONFIG[,key=value...]"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/bench_accuracy"), help="runs and SynthOcc per seed"
    )
    parser.add_argument("--name", default="bench_accuracy", help="results file stem in benchmarks/results/")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        help="overrides applied to every row (e.g. train.epochs=32)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore finished runs recorded in <out>/results.json"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="train nothing: the tables from the runs <out>/results.json records",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=[],
        help="add the finished runs of other --out folders (studies run side by side, e.g. one "
        "per core) to <out>/results.json first; two different runs of one row and seed are refused",
    )
    parser.add_argument(
        "--train-occluders",
        nargs="+",
        default=None,
        help="the unseen-occluder split: SynthOcc training images occluded only by these types",
    )
    parser.add_argument(
        "--no-pose-at-test",
        action="store_true",
        help="skip PGFL-KD's pose-at-test features (Table 8): f_G only, faster",
    )
    args = parser.parse_args()
    if args.train_occluders:  # `vehicle,pole,board` as `occreid synth` takes it, or `vehicle pole board`
        args.train_occluders = [k for arg in args.train_occluders for k in arg.split(",") if k]
    return args


def same_run(a: dict, b: dict) -> bool:
    """Whether two records are one run (the same numbers and provenance), e.g. merged twice."""
    keys = ("mAP", "rank1", "mINP", "provenance")
    return all(a.get(k) == b.get(k) for k in keys)


def merge_results(results: dict, others: list[Path]) -> None:
    """Add the finished runs of each <other>/results.json to `results`; a (row, seed) both hold with
    different records is refused (SystemExit naming it), none is overwritten."""
    for other in others:
        for label, runs in json.loads((other / "results.json").read_text()).items():
            mine = results.setdefault(label, {})
            for seed, record in runs.items():
                if seed in mine and not same_run(mine[seed], record):
                    raise SystemExit(
                        f"error: --merge {other}: row {label} seed {seed} is already there from another run "
                        f"(mAP {100 * mine[seed]['mAP']:.2f} against {100 * record['mAP']:.2f}); merge "
                        "folders that ran different seeds or rows, or remove one of the two runs"
                    )
                mine[seed] = record


def fixed_mask_overrides(label: str, results: dict, seed: int) -> list[str] | None:
    """ogfr.fixed_positions for the fixed-mask row: the k positions the same seed's agent erased most often
    (its analysis); None while that agent run is missing. Other rows: []."""
    if label != "ogfr_fixed_mask":
        return []
    agent = results.get(AGENT_ROW, {}).get(str(seed), {}).get("agent_analysis")
    if agent is None:
        return None
    return [f"ogfr.fixed_positions=[{','.join(map(str, agent['fixed_positions']))}]"]


def analyse(run_dir: Path, data_root: Path, dataset) -> dict | None:
    """The agent analysis (occreid.evaluation.agent_analysis) of an OGFR run with an agent, on up to 512 of
    its training images (the teacher's holistic view); None for other rows."""
    from occreid.evaluation.agent_analysis import analyse_agent, holistic_views
    from occreid.inference.models import load_method

    method, cfg = load_method(run_dir / "last.pt", "cpu")
    if getattr(method, "agent", None) is None:
        return None
    images, masks = holistic_views(cfg, data_root, dataset.train, max_images=512, seed=cfg.train.seed)
    return analyse_agent(method, images, masks, seed=cfg.train.seed)


def run_row(args, row, seed: int, data_root: Path, dataset, extra: list[str], held_out: list[str]) -> dict:
    """Train one (row, seed) and return its record: metrics, per-query AP / Rank-1 hits / INP, per occluder
    type, provenance, and (agent rows) the agent analysis."""
    from occreid.utils.provenance import provenance

    label, config, overrides = row
    run_dir = args.out / f"seed{seed}" / label
    cfg = load_config(
        config,
        [
            *overrides,
            *extra,
            *args.overrides,
            *held_out,
            f"data.root={data_root}",
            f"train.seed={seed}",
            f"train.output_dir={run_dir}",
            "model.test_feature=f_G",
            "train.eval_period=0",
        ],
    )
    print(f"\n=== seed {seed}: {label} ({' '.join(config)} {' '.join(overrides + extra)}) ===", flush=True)
    t0 = time.perf_counter()
    result = train(cfg, resume="auto", progress=False)  # a run an interrupted study left continues
    seconds = time.perf_counter() - t0
    record = {k: result.last_eval[k] for k in ("rank1", "rank5", "mAP", "mINP")}
    record["per_type"] = {  # the trainer's eval log: "mAP[vehicle]", ...
        key[len("mAP[") : -1]: {
            m: result.last_eval[f"{m}[{key[len('mAP[') : -1]}]"] for m in ("rank1", "mAP", "mINP")
        }
        for key in result.last_eval
        if key.startswith("mAP[")
    }
    record |= {
        "train_seconds": round(seconds, 1),
        "steps": result.steps,
        "config": config,
        "overrides": overrides + extra + args.overrides + held_out,
        "backbone": cfg.model.backbone,
        "provenance": provenance(cfg.model_dump(mode="json")),
        "per_query": json.loads((run_dir / "eval.json").read_text())["per_query"],
    }
    if not args.no_pose_at_test:
        record["pose_at_test"] = pose_at_test(run_dir / "last.pt", dataset, POSE_FEATURES)
    agent = analyse(run_dir, data_root, dataset) if cfg.model.name == "ogfr" else None
    if agent is not None:
        record["agent_analysis"] = agent
    print(
        f"seed {seed} {label}: mAP {100 * record['mAP']:.1f} rank-1 {100 * record['rank1']:.1f} "
        f"({seconds:.0f} s, {seconds / max(result.steps, 1):.2f} s/step incl. eval)",
        flush=True,
    )
    return record


def make_data(args, seed: int) -> Path:
    """The seed's SynthOcc under <out>/seed<seed>/synthocc (the unseen-occluder split with
    --train-occluders), generated once."""
    from occreid.data.synthocc import generate as generate_synthocc

    data_root = args.out / f"seed{seed}" / "synthocc"
    if not args.train_occluders:
        _make_data(data_root, seed)
    elif not (data_root / "synthocc.json").is_file():
        generate_synthocc(
            data_root, preset="default", seed=seed, protocol="occluded", train_occluders=args.train_occluders
        )
    return data_root


def run_study(args, rows, results: dict, held_out: list[str]) -> None:
    """Every (row, seed) not in `results` yet, seed by seed; results.json rewritten after each run."""
    from occreid.data.datasets import load_dataset

    state_path = args.out / "results.json"
    for seed in args.seeds:
        todo = [row for row in rows if str(seed) not in results.get(row[0], {})]
        for label in sorted({row[0] for row in rows} - {row[0] for row in todo}):
            print(f"seed {seed} {label}: done before, kept")
        if not todo:
            continue
        data_root = make_data(args, seed)
        dataset = load_dataset("synthocc", data_root)
        for row in todo:
            extra = fixed_mask_overrides(row[0], results, seed)
            if extra is None:
                print(f"seed {seed} {row[0]}: skipped, needs {AGENT_ROW} of seed {seed} first", flush=True)
                continue
            record = run_row(args, row, seed, data_root, dataset, extra, held_out)
            results.setdefault(row[0], {})[str(seed)] = record
            args.out.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_suffix(".json.tmp")  # after every run: nothing finished is lost
            tmp.write_text(json.dumps(results, indent=1))
            tmp.replace(state_path)


def main() -> None:
    args = parse_args()
    from occreid.data.occlusion.paste import held_out_for_unseen
    from occreid.data.synthocc.occluders import OCCLUDER_TYPES

    rows = [parse_row(spec) for spec in args.rows]
    unseen = set(OCCLUDER_TYPES) - set(args.train_occluders) if args.train_occluders else set()
    types, sources = held_out_for_unseen(sorted(unseen))
    held_out = [f"occlusion.held_out_sources=[{','.join(sources)}]"] if unseen else []
    held_out += [f"occlusion.held_out_types=[{','.join(types)}]"] if types else []
    labels = [label for label, _, _ in rows]
    state_path = args.out / "results.json"
    results: dict = {} if args.fresh or not state_path.is_file() else json.loads(state_path.read_text())
    merge_results(results, args.merge)  # finished runs only ever added, none dropped or overwritten
    if args.merge:
        args.out.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(results, indent=1))
    started = time.perf_counter()
    if not args.report:
        run_study(args, rows, results, held_out)
    write_report(args, results, labels, unseen, time.perf_counter() - started)


def write_report(args, results: dict, labels: list[str], unseen: set[str], seconds: float) -> None:
    """The tables (markdown) and every record (JSON) under benchmarks/results/<name>."""
    text = table(results, labels, args.seeds)
    lines = [
        f"# Accuracy study: {', '.join(labels)}",
        "",
        f"SynthOcc (default preset, occluded protocol), seeds {' '.join(map(str, args.seeds))}: each seed a "
        "fresh SynthOcc and that training seed, every row the same data, seed and schedule "
        f"(configs/demo/<method>.yaml{', ' + ' '.join(args.overrides) if args.overrides else ''}). "
        "f_G at test unless marked; pose-at-test rows use the ground-truth keypoints.",
        "",
        f"`python benchmarks/bench_accuracy.py --seeds {' '.join(map(str, args.seeds))} --rows "
        f"{' '.join(args.rows)}{' --set ' + ' '.join(args.overrides) if args.overrides else ''}"
        f"{' --train-occluders ' + ','.join(args.train_occluders) if args.train_occluders else ''}`",
        "",
        text,
        "",
        "Every pair of rows, A - B in points over the seeds both have: the paired 95% t-interval over "
        "seeds (the decision: better / worse only where it excludes 0, else no measurable difference) / "
        "the 95% bootstrap interval over seeds x queries (benchmarks/study_stats.py):",
        "",
        *pair_lines(results, [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]], args.seeds),
        "",
        "Paired f_G gains over the first row (same seed):",
        "",
        *gains(results, labels, args.seeds),
        "",
        "Over the row above (each ablation step):",
        "",
        *gains(results, labels, args.seeds, previous=True),
        "",
        "f_G mAP / Rank-1 by the query's occluder type (each type's queries against the whole gallery"
        f"{'; unseen: no training image has it' if unseen else ''}):",
        "",
        type_table(results, labels, args.seeds, unseen),
        "",
        "What the agent erases on the teacher's holistic view, percent of erased tokens by region (training "
        "images, random erasing drawn as in training; occreid/evaluation/agent_analysis.py):",
        "",
        agent_table(results, labels, args.seeds),
        "",
        f"Wall time of this invocation: {seconds:.0f} s (contended 2-core CPU; per-run "
        "train seconds in the JSON).",
    ]
    print("\n" + "\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps(
            {"seeds": args.seeds, "rows": args.rows, "overrides": args.overrides, "results": results},
            indent=1,
        )
    )
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
