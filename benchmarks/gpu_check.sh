#!/usr/bin/env bash
# The GPU check: what a GPU user runs on day one, in under 10 minutes, without network. One line per check:
#
#   ok   cuda tests: 7 passed in 20.1s
#   ok   gpu_check step ogfr bf16: 412.3 ms/step, peak 21.40 GiB (vit_base_patch16 256x128 batch 64, ...)
#   FAIL resume: error: ...                      (the check's last line; the run goes on with the next check)
#
# Checks: the CUDA-only tests; one paper-scale training step per method in fp32, TF32 and bf16 (ms per step,
# peak memory); OGFR with fp16 through the agent's warm-up; 2 DDP processes with OGFR's agent (NCCL on two
# GPUs, gloo sharing one GPU otherwise) and that run resumed on 1 process; an interrupted and resumed run
# against an uninterrupted one; evaluation and re-ranking at Occluded-Duke size on the GPU against the CPU
# (benchmarks/gpu_check.py says what each does). The lines, with the card's name, also go to
# benchmarks/results/gpu_check.md (not in a dry run). Exit status 1 when a check failed.
#
#   benchmarks/gpu_check.sh                       # on the GPU machine, from the repository
#   benchmarks/gpu_check.sh --dry-run             # the same Python on the CPU at toy sizes (CI runs this)
#   OCCREID_WHEELS=wheels/ benchmarks/gpu_check.sh   # offline: install occreid and its dependencies first
#
# Offline compute nodes: on a machine with network and the same Python, `pip wheel -w wheels/ ".[test]"`
# (add torch's CUDA wheel index where needed), carry wheels/ with the repository, and give OCCREID_WHEELS.
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
DRY=""
if [ "${1:-}" = "--dry-run" ]; then DRY="--dry-run"; fi

if [ -n "${OCCREID_WHEELS:-}" ]; then
  if ! "$PYTHON" -m pip install --quiet --no-index --find-links "$OCCREID_WHEELS" -e ".[test]"; then
    echo "error: installing from OCCREID_WHEELS=$OCCREID_WHEELS failed; build it with pip wheel -w DIR \".[test]\""
    exit 2
  fi
fi
if ! "$PYTHON" -c "import occreid, torch, timm" 2>/dev/null; then
  echo "error: $PYTHON cannot import occreid, torch and timm; install them or give OCCREID_WHEELS=DIR"
  exit 2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LIMIT="${GPU_CHECK_TIMEOUT:-240}"  # seconds per check
FAILED=0
LINES="$WORK/lines.txt"
: >"$LINES"

run_check() {  # NAME COMMAND...: the command's "gpu_check" lines, or one FAIL line with its last line
  local name="$1"; shift
  local log="$WORK/$name.log"
  if timeout "$LIMIT" "$@" >"$log" 2>&1; then
    grep '^gpu_check ' "$log" | sed 's/^/ok   /' | tee -a "$LINES"
  else
    FAILED=1
    echo "FAIL $name: $(grep -v '^\s*$' "$log" | tail -n 1)" | tee -a "$LINES"
  fi
}

if [ -n "$DRY" ]; then
  echo "skip cuda tests: dry run" | tee -a "$LINES"
else
  log="$WORK/cuda-tests.log"
  if timeout "$LIMIT" "$PYTHON" -m pytest -q -p no:xdist -p no:cacheprovider -rs tests/test_cuda.py \
      "tests/test_rerank.py::test_eval_path_on_cuda_equals_cpu" \
      "tests/test_heatmaps.py::test_renders_on_the_keypoints_device" >"$log" 2>&1; then
    echo "ok   cuda tests: $(tail -n 1 "$log" | tr -d '=')" | tee -a "$LINES"
  else
    FAILED=1
    echo "FAIL cuda tests: $(tail -n 1 "$log" | tr -d '=') (log: see pytest -rs tests/test_cuda.py)" | tee -a "$LINES"
  fi
fi
run_check steps "$PYTHON" benchmarks/gpu_check.py steps $DRY
run_check ogfr-fp16 "$PYTHON" benchmarks/gpu_check.py ogfr-fp16 $DRY
run_check ddp "$PYTHON" benchmarks/gpu_check.py ddp "$WORK" $DRY
run_check resume "$PYTHON" benchmarks/gpu_check.py resume "$WORK" $DRY
run_check eval "$PYTHON" benchmarks/gpu_check.py eval $DRY

if [ -z "$DRY" ]; then
  card="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
  {
    echo "# GPU check"
    echo
    echo "benchmarks/gpu_check.sh on $(date -u +%Y-%m-%d): ${card:-unknown card}, $("$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
    echo
    echo '```'
    cat "$LINES"
    echo '```'
  } >benchmarks/results/gpu_check.md
fi
exit "$FAILED"
