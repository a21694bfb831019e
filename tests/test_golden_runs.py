"""Golden runs: pins the training behaviour of every method, to the last bit.

A short fixed-seed run of each CPU-demo model (baseline, pgfl_kd, vit_baseline, ogfr:
`configs/demo/<key>.yaml` made tiny by tests/golden/make_golden.py) trains on a small SynthOcc and is
evaluated; every training record (each loss term, the loss, the gradient norm and the learning rate of every
step) and the final evaluation (mAP, mINP, Rank-k, per occluder type) must equal tests/golden/golden_runs.json
exactly (==, not approx).

A change that changes these numbers must say why in its commit, and regenerate them with

    python tests/golden/make_golden.py

The numbers are pinned to the torch version that wrote them (recorded in the JSON); on another version the
test skips. Only stable entry points are used (load_config, trainer.train, synthocc.generate), so a refactor
that keeps behaviour passes unchanged.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def _load_make_golden():
    spec = importlib.util.spec_from_file_location("occreid_tests_make_golden", GOLDEN_DIR / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _load_make_golden()
RECORDED = json.loads((GOLDEN_DIR / "golden_runs.json").read_text())
SAME_TORCH = torch.__version__ == RECORDED["torch"]
SKIP_REASON = (
    f"the golden numbers are pinned to torch {RECORDED['torch']} (this is torch {torch.__version__}); "
    "regenerate them with `python tests/golden/make_golden.py` on this version to compare"
)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    if not SAME_TORCH:
        pytest.skip(SKIP_REASON)
    return make_golden.make_synthocc(tmp_path_factory.mktemp("golden") / "synthocc")


def _first_difference(got, want, where: str = "") -> str | None:
    """Where `got` and `want` first differ, e.g. "train[3].loss: 4.85 != 4.86"."""
    if isinstance(got, dict) and isinstance(want, dict):
        if got.keys() != want.keys():
            return f"{where or 'record'}: keys {sorted(got)} != {sorted(want)}"
        diffs = (_first_difference(got[k], want[k], f"{where}.{k}" if where else k) for k in want)
        return next((d for d in diffs if d), None)
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return f"{where}: {len(got)} entries != {len(want)}"
        diffs = (_first_difference(g, w, f"{where}[{i}]") for i, (g, w) in enumerate(zip(got, want)))
        return next((d for d in diffs if d), None)
    return None if got == want and type(got) is type(want) else f"{where}: {got!r} != {want!r} (recorded)"


def test_every_method_is_recorded():
    assert tuple(RECORDED["runs"]) == make_golden.METHODS


@pytest.mark.parametrize("method_key", make_golden.METHODS)
def test_short_run_repeats_the_recorded_numbers(method_key, synth_root, tmp_path):
    result = make_golden.run_golden(method_key, synth_root, tmp_path)
    # A round trip through JSON, as the recorded numbers went (tuples become lists; floats are exact).
    result = json.loads(json.dumps(result))
    recorded = RECORDED["runs"][method_key]
    difference = _first_difference(result, recorded)
    assert difference is None, f"{method_key}: {difference}"
    assert result == recorded
