"""The method registry (occreid.methods): every registered method is one package with what the registry
reads, its config section, presets and demo models; every method trains a step, deploys, and its deployed
model gives the method's own test feature. These tests iterate over the registry, so a new method is
covered."""

from pathlib import Path

import pytest
import torch

from occreid.config import Config, load_config, read_yaml
from occreid.methods import METHODS, build_model, config_sections, demo_models, presets

TINY = ["model.pretrained=false", "data.image_size=[64,32]"]
DEMO = {m.key: m for m in demo_models()}


@pytest.mark.parametrize("name", METHODS)
def test_every_method_is_a_package_with_a_builder_and_demo_models(name):
    import importlib

    package = importlib.import_module(f"occreid.methods.{name}")
    assert callable(importlib.import_module(f"occreid.methods.{name}.method").build)
    assert package.DEMO, f"{name} has no demo model"
    for model in package.DEMO:
        assert load_config(model.config).model.name == name, model.config


def test_the_config_has_each_methods_section_with_its_defaults():
    sections = config_sections()
    assert set(sections) == {"baseline", "pgfl_kd", "ogfr"}  # the baseline: which views it trains on
    cfg = Config()
    for name, section in sections.items():
        assert type(getattr(cfg, name)) is section and getattr(cfg, name) == section()


@pytest.mark.parametrize("preset", sorted(presets()))
def test_every_preset_sets_only_its_methods_switches_and_loads_on_its_demo_config(preset):
    path = presets()[preset]
    method = path.parent.parent.name
    values = read_yaml(path)
    assert set(values) <= {"model", method} and set(values.get("model", {})) <= {"name"}
    cfg = load_config([f"configs/demo/{method}.yaml", str(path)])
    for key, value in values.get(method, {}).items():
        got = getattr(getattr(cfg, method), key)
        assert got == (tuple(value) if isinstance(value, list) else value), key
    assert Path(f"configs/ablations/{preset}.yaml").is_file() or not Path("configs").is_dir()


@pytest.mark.parametrize("key", sorted(DEMO))
def test_every_method_trains_a_step_and_its_deployed_model_gives_its_test_feature(key, batch_for):
    cfg = load_config(DEMO[key].config, TINY)
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4)
    batch = batch_for(method.batch_needs(), cfg.data.image_size)
    terms = method.training_step(batch)
    loss = sum(v for k, v in terms.items() if k not in method.metric_names)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.backbone.parameters())
    method.eval()
    with torch.no_grad():
        deployed = method.deploy().eval()
        expected = method.extract(batch["images"][:2], feature="f_G")
        torch.testing.assert_close(deployed(batch["images"][:2]), expected)
    assert expected.shape == (2, method.channels)


@pytest.mark.parametrize("key", sorted(DEMO))
def test_a_method_asks_ddp_to_find_unused_parameters_exactly_when_it_leaves_some(key, batch_for):
    """DDP waits forever for a gradient that never comes unless told to look (a cost every step)."""
    cfg = load_config(DEMO[key].config, TINY)
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4).train()
    unused = set()
    for epoch in (0, cfg.train.epochs - 1):  # in a warm-up, and after
        method.zero_grad(set_to_none=True)
        method.set_epoch(epoch)
        terms = method.training_step(batch_for(method.batch_needs(), cfg.data.image_size))
        sum(v for k, v in terms.items() if k not in method.metric_names).backward()
        unused |= {n for n, p in method.named_parameters() if p.requires_grad and p.grad is None}
    assert method.find_unused_parameters == bool(unused), sorted(unused)[:5]
