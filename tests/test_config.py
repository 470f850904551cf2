"""Config layering, validation and every config error, through the real CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf


def resolved(cli, *args) -> dict:
    result = cli("config", "asv", *args)
    assert result.exit_code == 0, result.stderr
    return OmegaConf.to_container(OmegaConf.create(result.stdout))


def test_defaults_resolve_to_the_bundled_mini_corpus(cli):
    conf = resolved(cli)
    assert Path(conf["prepare_data"]["dataset_root"]).joinpath("veri_test2.txt").is_file()
    assert conf["train"]["seed"] == conf["seed"] == conf["prepare_data"]["seed"]


def test_layers_apply_in_order_files_then_overrides(cli, tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train:\n  total_steps: 10\n  log_step: 5\n")
    second.write_text("train:\n  total_steps: 20\n")
    conf = resolved(cli, "-c", first, "-c", second, "train.log_step=7", "build_optimizer.conf.lr=0.01")
    assert conf["train"]["total_steps"] == 20
    assert conf["train"]["log_step"] == 7
    assert conf["build_optimizer"]["conf"]["lr"] == 0.01


def test_one_seed_drives_every_seed_key(cli):
    conf = resolved(cli, "seed=7")
    assert conf["train"]["seed"] == 7 and conf["prepare_data"]["seed"] == 7


def test_unknown_override_suggests_key(cli):
    result = cli("config", "asv", "train.total_step=3")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: train.total_step: unknown key (override); did you mean train.total_steps?"


def test_unknown_key_in_file_names_the_file(cli, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("build_downstream:\n  xvectr:\n    channels: 3\n")
    result = cli("config", "asv", "-c", overlay)
    assert result.exit_code == 2
    assert "build_downstream.xvectr: unknown key" in result.stderr and str(overlay) in result.stderr
    assert "did you mean build_downstream.xvector" in result.stderr


def test_wrong_type_names_key_and_expected_type(cli):
    result = cli("config", "asv", "train.total_steps=abc")
    assert result.exit_code == 2
    assert "train.total_steps: expected int, got str 'abc'" in result.stderr


def test_int_is_accepted_where_float_is_expected(cli):
    assert resolved(cli, "build_dataset.crop_secs=3")["build_dataset"]["crop_secs"] == 3


def test_every_missing_required_value_is_listed_at_once(cli, tmp_path):
    overlay = tmp_path / "missing.yaml"
    overlay.write_text("prepare_data:\n  dataset_root: ???\ntrain:\n  total_steps: ???\n")
    result = cli("config", "asv", "-c", overlay)
    assert result.exit_code == 2
    assert "prepare_data.dataset_root" in result.stderr and "train.total_steps" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_optimizer_conf_is_open_but_checked_against_the_torch_class(cli, tmp_path):
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "build_optimizer.conf.lrr=0.1")
    assert result.exit_code == 2
    assert "build_optimizer.conf.lrr: Adam has no argument 'lrr'; did you mean build_optimizer.conf.lr?" in result.stderr
    assert not (tmp_path / "exp" / "records").exists()


def test_unknown_optimizer_class_suggests_one(cli, tmp_path):
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "build_optimizer.name=Adamw")
    assert result.exit_code == 2
    assert "build_optimizer.name: 'Adamw' is not a class in torch.optim; did you mean AdamW?" in result.stderr


def test_choice_keys_are_checked_before_work(cli, tmp_path):
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "build_downstream.name=resnet")
    assert result.exit_code == 2
    assert "build_downstream.name: 'resnet' is not one of xvector, ecapa" in result.stderr


def test_malformed_override_and_missing_config_file(cli, tmp_path):
    assert "expected key=value" in cli("config", "asv", "train.total_steps").stderr
    result = cli("config", "asv", "-c", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "nope.yaml: config file does not exist" in result.stderr


def test_unknown_problem_suggests_name(cli):
    result = cli("config", "asvv")
    assert result.exit_code == 2 and "unknown problem 'asvv'" in result.stderr and "did you mean asv" in result.stderr


@pytest.mark.e2e
def test_every_shipped_config_and_recipe_resolves(cli):
    repo = Path(__file__).resolve().parent.parent
    for recipe in sorted((repo / "recipes").glob("*/*.yaml")):
        problem = recipe.stem
        result = cli("config", problem, "-c", recipe, "prepare_data.dataset_root=/data")
        assert result.exit_code == 0, f"{recipe}: {result.stderr}"
