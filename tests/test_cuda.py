"""What only a CUDA GPU can show (skipped elsewhere; benchmarks/gpu_check.sh runs them): one host sync per
training step, fp32 distances under CUDA autocast, the RNG state of this GPU alone, IEEE fp32 evaluation
while training uses TF32."""

import warnings

import pytest
import torch

from occreid.config import load_config
from occreid.engine import trainer
from occreid.engine.checkpoint import rng_state
from occreid.methods import build_model
from occreid.modeling.losses import pairwise_euclidean
from occreid.utils.device import ieee_fp32, set_tf32
from occreid.utils.distributed import DistInfo

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = ["model.pretrained=false", "data.image_size=[64,32]", "model.vit_depth=2", "ogfr.agent_block=1"]
TINY += ["ogfr.shared_blocks=1", "train.amp=bf16", "train.device=cuda"]


def _run(key: str, random_batch) -> tuple[trainer.TrainingRun, dict]:
    cfg = load_config(f"configs/demo/{key}.yaml", TINY)
    device = torch.device("cuda")
    info = DistInfo(device=device)
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4).to(device)
    extra = method.extra_optimizers()
    owned = {id(p) for opt in extra.values() for g in opt.param_groups for p in g["params"]}
    optimizer = torch.optim.Adam(method.parameter_groups(0.0, exclude=owned), lr=1e-4)
    run = trainer.TrainingRun(
        cfg, info, None, None, None, (None, None), method, None, optimizer, extra, None,
        torch.amp.GradScaler("cuda", enabled=False), trainer._step_module(method, info),
    )  # fmt: skip
    batch = {k: v.to(device) for k, v in random_batch(method.batch_needs(), cfg.data.image_size).items()}
    return run, batch


@pytest.mark.parametrize("key", ["baseline", "pgfl_kd", "ogfr", "vit_baseline"])
def test_a_bf16_training_step_syncs_with_the_host_once(key, batch_for):
    run, batch = _run(key, batch_for)
    run.method.train()
    for _ in range(2):  # warm-up: lazy initialisation (cuBLAS handles, cached part membership)
        trainer._train_step(run, batch, epoch=0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer._train_step(run, batch, epoch=0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, syncs


def test_triplet_distances_under_cuda_bf16_autocast_are_the_fp32_ones():
    g = torch.Generator().manual_seed(0)
    x = (10 * torch.randn(768, generator=g) + 0.3 * torch.randn(16, 768, generator=g)).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        dist = pairwise_euclidean(x)
    with ieee_fp32():
        torch.testing.assert_close(dist, pairwise_euclidean(x), rtol=1e-4, atol=1e-4)


def test_the_checkpoint_holds_this_gpus_rng_state_only():
    assert len(rng_state(torch.device("cuda:0"))["cuda"]) == 1


def test_evaluation_matmuls_are_ieee_fp32_while_training_uses_tf32():
    a = torch.randn(512, 512, device="cuda")
    exact = (a.double() @ a.double()).float()
    set_tf32(True)
    try:
        with ieee_fp32():
            inside = a @ a
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # restored after
    finally:
        set_tf32(False)
    torch.testing.assert_close(inside, exact, rtol=1e-4, atol=1e-3)
