import pytest

from occreid.config import Config, load_config, save_config
from occreid.errors import OccreidError


def test_defaults_follow_the_paper_recipe():
    cfg = Config()
    assert cfg.data.image_size == (384, 128)
    assert (cfg.data.p, cfg.data.k) == (4, 16)
    assert cfg.train.lr == pytest.approx(3.5e-4)
    assert cfg.train.milestones == [30, 70]
    assert cfg.loss.lambda_cl == cfg.loss.lambda_mcl == 0.25


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.1\n  epochs: 5\nmodel:\n  backbone: resnet18\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "child.yaml", overrides=["train.lr=3e-4", "model.feb=false"])
    assert cfg.train.epochs == 7  # child wins over base
    assert cfg.train.lr == pytest.approx(3e-4)  # override wins over both
    assert cfg.model.backbone == "resnet18"  # inherited
    assert cfg.model.feb is False


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(OccreidError, match=r"unknown key 'train\.learning_rate'"):
        load_config(tmp_path / "bad.yaml")


def test_wrong_type_is_named():
    with pytest.raises(OccreidError, match=r"'train\.epochs'"):
        load_config(None, overrides=["train.epochs=many"])


def test_bad_override_syntax():
    with pytest.raises(OccreidError, match="section.key=value"):
        load_config(None, overrides=["train.lr"])


def test_missing_file_and_base_loop(tmp_path):
    with pytest.raises(OccreidError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(OccreidError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, overrides=["model.name=baseline", "data.image_size=[256,128]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert again.data.image_size == (256, 128)
