import pytest

from occreid.config import Config, apply_overrides, load_config, save_config
from occreid.errors import OccreidError


def test_defaults_follow_the_paper_recipe():
    cfg = Config()
    assert cfg.data.image_size == (384, 128)
    assert (cfg.data.p, cfg.data.k) == (4, 16)
    assert cfg.train.lr == pytest.approx(3.5e-4)
    assert cfg.train.milestones == [30, 70]
    assert cfg.pgfl_kd.lambda_cl == cfg.pgfl_kd.lambda_mcl == 0.25


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.1\n  epochs: 5\nmodel:\n  backbone: resnet18\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "child.yaml", overrides=["train.lr=3e-4", "pgfl_kd.feb=false"])
    assert cfg.train.epochs == 7  # child wins over base
    assert cfg.train.lr == pytest.approx(3e-4)  # override wins over both
    assert cfg.model.backbone == "resnet18"  # inherited
    assert cfg.pgfl_kd.feb is False


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


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.seed=-1", r"'train\.seed': Input should be greater than or equal to 0 \(got -1\)"),
        ("train.seed=4294967296", r"'train\.seed': Input should be less than or equal to 4294967295"),
        ("train.seed=true", r"'train\.seed': Input should be a valid integer \(got True\)"),
        ("train.epochs='12'", r"'train\.epochs': Input should be a valid integer \(got '12'\)"),
        ("pgfl_kd.sab=yes", r"'pgfl_kd\.sab': Input should be a valid boolean \(got 'yes'\)"),
        ("pgfl_kd.sab=1", r"'pgfl_kd\.sab': Input should be a valid boolean \(got 1\)"),
        ("train.lr=true", r"'train\.lr': Input should be a valid number \(got True\)"),
        ("data.image_size=[64,true]", r"'data\.image_size\.1': Input should be a valid integer"),
        ("data.image_size=64", r"'data\.image_size': Input should be a valid tuple \(got 64\)"),
    ],
)
def test_types_are_strict_and_the_error_names_the_key(override, message):
    with pytest.raises(OccreidError, match=message):
        load_config(None, overrides=[override])


def test_strict_types_in_a_yaml_file_name_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text('train:\n  epochs: "12"\npgfl_kd:\n  sab: "yes"\n')
    with pytest.raises(OccreidError, match=r"'train\.epochs': .*integer.*; 'pgfl_kd\.sab': .*boolean"):
        load_config(tmp_path / "bad.yaml")


def test_lists_ints_and_exponents_still_fill_tuples_and_floats(tmp_path):
    (tmp_path / "ok.yaml").write_text(
        "data:\n  image_size: [256, 128]\n  mean: [0, 0.5, 1]\n  erasing_prob: 0\n"
        "train:\n  lr: 1e-3\n  grad_clip: 5\n"
    )
    cfg = load_config(tmp_path / "ok.yaml", overrides=["train.weight_decay=5e-4", "pgfl_kd.lambda_cl=1"])
    assert cfg.data.image_size == (256, 128) and cfg.data.mean == (0.0, 0.5, 1.0)
    assert cfg.data.erasing_prob == 0.0 and isinstance(cfg.data.erasing_prob, float)
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.weight_decay == pytest.approx(5e-4)
    assert cfg.train.grad_clip == 5.0 and cfg.pgfl_kd.lambda_cl == 1.0
    assert load_config(None, overrides=["train.seed=4294967295"]).train.seed == 2**32 - 1


def test_text_fields_keep_the_override_as_written():
    cfg = load_config(
        None,
        overrides=["data.root=2024", "data.test_root=true", "train.output_dir=1e5", "data.keypoints='007'"],
    )
    assert cfg.data.root == "2024" and cfg.data.test_root == "true"
    assert cfg.train.output_dir == "1e5" and cfg.data.keypoints == "007"
    assert load_config(None, overrides=["data.test_root=null"]).data.test_root is None
    # bool | str: true is the bool, anything else the path
    assert load_config(None, overrides=["model.pretrained=true"]).model.pretrained is True
    assert load_config(None, overrides=["model.pretrained=2024"]).model.pretrained == "2024"
    # a non-text field still gets the YAML value
    assert load_config(None, overrides=["train.epochs=2024"]).train.epochs == 2024


def test_apply_overrides_is_strict_too():
    cfg = apply_overrides(Config(), ["data.root=2024", "train.seed=3"])
    assert (cfg.data.root, cfg.train.seed, cfg.data.image_size) == ("2024", 3, (384, 128))
    with pytest.raises(OccreidError, match=r"overrides: 'train\.seed': .*greater than or equal to 0"):
        apply_overrides(cfg, ["train.seed=-5"])
