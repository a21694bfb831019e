"""What a GPU user runs, checked on the CPU where the CPU can show it: resume whatever device the checkpoint's
tensors were mapped to and with fewer GPUs than it was saved on, a GradScaler with an optimiser that has no
gradients, fp32 maths inside autocast, per-rank seeds and sharded image checks under DDP, the errors and
timeouts of process-group set-up, and evaluation in fp32. benchmarks/gpu_check.sh runs the rest on a GPU."""

import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from occreid.config import load_config
from occreid.data.records import ImageRecord
from occreid.engine import trainer
from occreid.engine.checkpoint import rng_state, set_rng_state
from occreid.errors import OccreidError
from occreid.evaluation.evaluate import extract_features
from occreid.methods import build_model
from occreid.methods.ogfr.fepm import PurificationAgent, sample_tokens
from occreid.methods.pgfl_kd.feb import ForegroundEnhancedBranch
from occreid.methods.pgfl_kd.losses import multi_part_contrastive_loss, part_positive_mask
from occreid.modeling.checkpoint import load_checkpoint
from occreid.modeling.losses import batch_hard_triplet_loss, pairwise_euclidean
from occreid.utils import distributed
from occreid.utils.distributed import DistInfo, parameter_fingerprint, setup_distributed

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from occreid.data.synthocc import generate as generate_synthocc

    root = tmp_path_factory.mktemp("synth") / "synthocc"
    generate_synthocc(root, preset="small", seed=0, protocol="occluded", progress=False)
    return root


def tiny(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={root}",
        "data.image_size=[64,32]",
        "data.p=4",
        "data.k=2",
        "data.num_workers=0",
        "model.name=baseline",
        "model.backbone=resnet18",
        "model.pretrained=false",
        "train.epochs=2",
        "train.steps_per_epoch=2",
        "train.warmup_epochs=0",
        "train.eval_period=0",
        "train.log_period=1",
        "train.device=cpu",
        f"train.output_dir={out}",
        "eval.batch_size=64",
        *extra,
    ]


# ---- resume


def test_resume_reads_the_checkpoint_on_the_cpu_whatever_the_training_device(synth_root, tmp_path):
    """The trainer loads with map_location="cpu": a checkpoint mapped to the training device (here the meta
    device, standing in for a GPU) would put the numpy RNG state where `.numpy()` cannot read it."""
    out = tmp_path / "run"
    trainer.train(load_config(None, tiny(synth_root, out, "train.epochs=1")), progress=False)
    cfg = load_config(None, tiny(synth_root, out))
    state, path = trainer._resume_state(cfg, "auto")
    run = trainer._set_up(cfg, resuming=True)
    run = dataclasses.replace(run, info=dataclasses.replace(run.info, device=torch.device("meta")))
    trainer._resume(run, state, path)
    assert (run.start_epoch, run.step) == (1, 2)
    state = next(iter(run.optimizer.state.values()))
    assert state["exp_avg"].device.type == "cpu" and state["step"].device.type == "cpu"
    torch.testing.assert_close(
        dict(run.method.state_dict())["necks.G.classifier.weight"],
        load_checkpoint(out / "last.pt")["model"]["necks.G.classifier.weight"],
    )


def test_a_checkpoint_with_eight_cuda_rng_states_resumes_on_one_gpu(monkeypatch):
    """Older checkpoints kept every visible GPU's CUDA RNG state; one saved on 8 GPUs must load on 1."""
    set_states = []

    def set_cuda_state(new_state, device="cuda"):
        index = torch.device(device).index or 0
        if index >= 1:  # what torch raises for a GPU this machine does not have
            raise RuntimeError("CUDA error: invalid device ordinal")
        set_states.append((index, new_state.clone()))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_cuda_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_cuda_state)
    state = rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    set_rng_state(state, torch.device("cuda:0"))
    assert len(set_states) == 1 and set_states[0][0] == 0 and int(set_states[0][1][0]) == 0


def test_the_checkpoint_keeps_only_this_devices_cuda_state():
    assert rng_state(torch.device("cpu"))["cuda"] == []


# ---- AMP


def test_an_optimiser_without_gradients_is_skipped_under_a_grad_scaler(synth_root, tmp_path, monkeypatch):
    """OGFR's agent has no gradient in its warm-up (its loss is a constant); a GradScaler (fp16's, enabled
    here on the CPU) refuses to step such an optimiser. After the warm-up the agent learns."""
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", enabled=True))
    ogfr = ["model.name=ogfr", "model.backbone=vit_tiny_patch16", "model.vit_depth=2", "ogfr.pattern_block=1"]
    ogfr += ["ogfr.agent_block=1", "ogfr.shared_blocks=1", "ogfr.agent_warmup_epochs=1", "train.amp=bf16"]
    out = tmp_path / "ogfr"
    trainer.train(load_config(None, tiny(synth_root, out, *ogfr)), progress=False)
    state = load_checkpoint(out / "last.pt")
    assert state["scaler"]["scale"] > 1  # the scaler ran
    assert state["extra_optimizers"]["agent"]["state"]  # the agent stepped once its warm-up was over
    rl = [json.loads(line)["rl"] for line in (out / "metrics.jsonl").read_text().splitlines()[:4]]
    assert rl[:2] == [0.0, 0.0] and rl[2] != 0.0


def _nearly_parallel(b: int = 16, d: int = 768, seed: int = 0) -> torch.Tensor:
    """ViT class tokens: a large common component and small per-image parts (cosine about 0.9995)."""
    g = torch.Generator().manual_seed(seed)
    return 10 * torch.randn(d, generator=g) + 0.3 * torch.randn(b, d, generator=g)


def test_triplet_distances_under_bf16_autocast_are_the_fp32_ones():
    x = _nearly_parallel()
    pids = torch.arange(4).repeat_interleave(4)
    cosine = torch.nn.functional.cosine_similarity(x[0], x[1], dim=0)
    assert 0.999 < cosine < 0.9999
    with torch.autocast(**BF16):
        dist, loss = pairwise_euclidean(x), batch_hard_triplet_loss(x, pids, None)
    torch.testing.assert_close(dist, pairwise_euclidean(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, batch_hard_triplet_loss(x, pids, None), rtol=1e-5, atol=1e-6)


def test_mcl_similarities_and_feb_attention_under_bf16_autocast_are_the_fp32_ones():
    g = torch.Generator().manual_seed(1)
    f_g, f_p = torch.randn(4, 8, 160, generator=g), torch.randn(4, 8, 160, generator=g)
    positive = part_positive_mask([0, 2, 1, 4, 3, 6, 5, 7])
    with torch.autocast(**BF16):
        mcl = multi_part_contrastive_loss(f_g, f_p, positive)
    torch.testing.assert_close(mcl, multi_part_contrastive_loss(f_g, f_p, positive), rtol=1e-5, atol=1e-6)
    feb = ForegroundEnhancedBranch()
    fmap, f_l = torch.rand(2, 256, 6, 4, generator=g) + 1, torch.rand(2, 256, generator=g) + 1
    with torch.autocast(**BF16):
        attention = feb.attention(fmap, f_l)
    torch.testing.assert_close(attention, feb.attention(fmap, f_l), rtol=1e-5, atol=1e-7)


def test_the_agents_sampling_under_autocast_is_the_fp32_law():
    torch.manual_seed(0)
    agent = PurificationAgent(64, 32)
    torch.nn.init.normal_(agent.score[-1].weight)  # a trained agent: non-uniform scores
    tokens = torch.randn(8, 1 + 32, 64)
    with torch.autocast(**BF16):
        scores = agent(tokens)
        torch.manual_seed(1)
        drawn = sample_tokens(scores, 6)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, agent(tokens))
    torch.manual_seed(1)
    assert torch.equal(drawn, sample_tokens(agent(tokens), 6))
    # bf16 scores (from elsewhere) are sampled with fp32 uniforms too: the same draw as their fp32 copy
    torch.manual_seed(2)
    from_bf16 = sample_tokens(scores.bfloat16(), 6)
    torch.manual_seed(2)
    assert torch.equal(from_bf16, sample_tokens(scores.bfloat16().float(), 6))


def test_the_rewards_logits_are_fp32_under_autocast():
    cfg = load_config(
        "configs/demo/ogfr.yaml",
        ["model.pretrained=false", "data.image_size=[64,32]", "model.vit_depth=2", "ogfr.agent_block=1"]
        + ["ogfr.shared_blocks=1"],
    )
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4).train()
    x = torch.randn(4, 1 + method.backbone.vit.num_patches, method.channels)
    calls = []
    classifier = method.necks["T"].classifier
    classifier.register_forward_hook(lambda m, i, o: calls.append((i[0].dtype, o.dtype)))
    with torch.autocast(**BF16):
        method.identity_log_prob(x, [None], torch.arange(4))
    assert calls == [(torch.float32, torch.float32)]


def test_evaluation_features_are_fp32_whatever_train_amp(tmp_path):
    records = []
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(str(path), pid=i, camid=0))
    base = ["model.name=baseline", "model.backbone=resnet18", "model.pretrained=false"]
    base += ["data.image_size=[64,32]", "data.num_workers=0"]
    fp32_cfg, bf16_cfg = load_config(None, base), load_config(None, [*base, "train.amp=bf16"])
    torch.manual_seed(0)
    model = build_model(fp32_cfg, num_classes=4)
    cpu = torch.device("cpu")
    assert torch.equal(
        extract_features(model, records, bf16_cfg, cpu), extract_features(model, records, fp32_cfg, cpu)
    )


# ---- several processes


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(OccreidError, match=r"2 processes .* 1 GPU.*--nproc_per_node 1"):
        setup_distributed("auto")


def test_the_process_group_gets_an_explicit_timeout(monkeypatch):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    setup_distributed("cpu", timeout_min=45)
    assert seen == {"backend": "gloo", "timeout": timedelta(minutes=45)}


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
import occreid.data.splits as splits
import occreid.engine.trainer as trainer
from occreid.cli import main

record = {"draws": [], "checked": []}
out = Path(sys.argv[1], f"rank{os.environ['RANK']}.json")
build = trainer.build_model

def build_model(cfg, num_classes):
    method = build(cfg, num_classes)
    step = method.training_step
    def training_step(batch):
        record["draws"].append(torch.rand(3).tolist())
        out.write_text(json.dumps(record))
        return step(batch)
    method.training_step = training_step
    return method

unreadable = getattr(splits, "unreadable_images", None)
def spy(paths, what, **kwargs):
    record["checked"] += [str(p) for p in paths]
    out.write_text(json.dumps(record))
    return unreadable(paths, what, **kwargs)

trainer.build_model = build_model
if unreadable is not None:
    splits.unreadable_images = spy
sys.argv = ["occreid", "train", *[a for kv in sys.argv[2:] for a in ("--set", kv)]]
main()  # what `torchrun -m occreid train` runs, its exit included
"""


def test_two_gloo_processes_draw_their_own_random_numbers_and_share_the_image_checks(synth_root, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    overrides = tiny(synth_root, out, "train.epochs=1", "train.steps_per_epoch=1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    cmd += [str(script), str(tmp_path), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["draws"] != ranks[1]["draws"]
    checked = [set(r["checked"]) for r in ranks]
    assert not checked[0] & checked[1]
    from occreid.data.datasets import load_dataset

    ds = load_dataset("synthocc", synth_root)
    assert checked[0] | checked[1] == {r.path for r in [*ds.train, *ds.query, *ds.gallery]}
    prints = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (ddp,) = [r for r in prints if r["kind"] == "ddp"]
    assert ddp["fingerprints"][0] == ddp["fingerprints"][1]  # one model, whatever each rank drew


def test_the_fingerprint_is_the_sum_over_all_values_without_concatenating_them(monkeypatch):
    module = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.BatchNorm1d(3))
    flat = torch.cat([t.detach().double().flatten() for t in [*module.parameters(), *module.buffers()][:-1]])
    expected = float((flat * torch.cos(torch.arange(flat.numel(), dtype=torch.float64))).sum())

    def no_copy_of_the_model(*args, **kwargs):  # OGFR's teacher and student: 4 GB of host memory per rank
        raise AssertionError("the fingerprint concatenated every parameter")

    monkeypatch.setattr(torch, "cat", no_copy_of_the_model)
    assert parameter_fingerprint(module) == pytest.approx(expected, rel=1e-12)


def test_only_a_method_that_asks_gets_ddps_search_for_unused_parameters(monkeypatch):
    seen = {}

    def ddp(module, device_ids=None, find_unused_parameters=False):
        seen["find_unused"] = find_unused_parameters
        return module

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", ddp)
    info = DistInfo(rank=0, world_size=2)
    base = ["model.pretrained=false", "data.image_size=[64,32]", "model.vit_depth=2", "ogfr.agent_block=1"]
    base += ["ogfr.shared_blocks=1"]
    for config, extra, expected in [
        ("configs/demo/pgfl_kd.yaml", [], False),
        ("configs/demo/ogfr.yaml", ["ogfr.agent_warmup_epochs=0"], False),
        ("configs/demo/ogfr.yaml", ["ogfr.agent_warmup_epochs=1"], True),
    ]:
        method = build_model(load_config(config, [*base, *extra]), num_classes=4)
        trainer._step_module(method, info)
        assert seen["find_unused"] is expected, (config, extra)


# ---- settings that depend on the device


def test_auto_settings_resolve_per_device(monkeypatch):
    from occreid.data.loaders import loader_workers
    from occreid.utils.device import resolve_amp

    cfg = load_config(None, ["train.sync_bn=auto", "data.p=4", "data.k=4"])
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert resolve_amp("auto", cpu) == "none" and resolve_amp("fp16", cpu) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_amp("auto", gpu) == "bf16"
    assert trainer._sync_bn(cfg, DistInfo(world_size=2, device=gpu))  # 16 images per GPU
    assert not trainer._sync_bn(cfg, DistInfo(world_size=1, device=gpu))
    assert not trainer._sync_bn(load_config(None, ["train.sync_bn=auto"]), DistInfo(world_size=2, device=gpu))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loader_workers("auto") == 3 and loader_workers(5) == 5
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert loader_workers("auto") == 8


def test_the_part_membership_matrix_is_built_once_per_device():
    from occreid.pose.heatmaps import part_membership

    assert part_membership(torch.device("cpu")) is part_membership("cpu")
    assert part_membership("cpu").sum() == 17


# ---- host syncs


@pytest.mark.parametrize("key", ["baseline", "pgfl_kd", "ogfr", "vit_baseline"])
def test_a_training_step_reads_one_value_back_to_the_host(key, batch_for, monkeypatch):
    """On a GPU each tensor read by Python (bool, item, int, float, tolist) waits for the GPU; a step may do
    it once, for the loss check (tests/test_cuda.py counts the real syncs on a GPU)."""
    cfg = load_config(f"configs/demo/{key}.yaml", ["model.pretrained=false", "data.image_size=[64,32]"])
    info = DistInfo(device=torch.device("cpu"))
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4)
    extra = method.extra_optimizers()
    owned = {id(p) for opt in extra.values() for g in opt.param_groups for p in g["params"]}
    optimizer = torch.optim.Adam(method.parameter_groups(0.0, exclude=owned), lr=1e-4)
    run = trainer.TrainingRun(
        cfg, info, None, None, None, (None, None), method, None, optimizer, extra, None,
        torch.amp.GradScaler("cpu", enabled=False), trainer._step_module(method, info),
    )  # fmt: skip
    batch = batch_for(method.batch_needs(), cfg.data.image_size)
    batch["camids"] = torch.tensor([0, 1] * 4)
    method.train()
    trainer._train_step(run, batch, epoch=1)  # creates the optimisers' states
    # Adam's step counters live on the CPU also when training on a GPU: reading them costs nothing.
    counters = {id(s["step"]) for opt in run.optimizers for s in opt.state.values()}
    reads = []
    for name in ("__bool__", "item", "__int__", "__float__", "tolist", "__index__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *args, _real=real, _name=name):
            if id(self) not in counters:
                reads.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    trainer._train_step(run, batch, epoch=1)
    assert len(reads) == 1, reads
