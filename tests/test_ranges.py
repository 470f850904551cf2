"""Every numeric config key has a declared range (speechrecipe/ranges.py), and values outside it are refused."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speechrecipe.config import flatten, load_config
from speechrecipe.problems.asv import ASV
from speechrecipe.ranges import MAY_BE_EMPTY, NONEMPTY, RANGES, in_range, parse_range, ranges_for
from speechrecipe.registry import PROBLEMS, resolve_problem

CONF = Path(__file__).resolve().parent.parent / "conf"


def _numeric(value) -> bool:
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    return number(value) or (isinstance(value, list) and bool(value) and all(number(x) for x in value))


@pytest.mark.parametrize("yaml_file", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_every_numeric_key_has_a_declared_range(yaml_file):
    leaves = flatten(OmegaConf.load(yaml_file), resolve=False)
    missing = [key for key, value in leaves.items() if _numeric(value) and key not in RANGES]
    assert not missing, (f"{yaml_file.name}: no range declared for {', '.join(missing)}; add each to RANGES "
                         "in speechrecipe/ranges.py (e.g. \"train.foo\": COUNT)")
    # and every shipped default lies in its own range
    outside = [f"{k}={v!r} ({RANGES[k]})" for k, v in leaves.items() if k in RANGES and not str(v).startswith("${")
               and not in_range(v, RANGES[k])]
    assert not outside, f"{yaml_file.name}: defaults outside their range: {outside}"


def test_every_declared_range_parses():
    for key, spec in RANGES.items():
        parse_range(spec)


@pytest.mark.parametrize("value, spec, inside", [
    (1, "[1, inf)", True), (0, "[1, inf)", False), (0.0, "(0, 1]", False), (1.0, "(0, 1]", True),
    (None, "[1, inf)", False), (None, "[1, inf) or null", True), ([0.9, 1.1], "(0, inf)", True),
    ([0.9, 0.0], "(0, inf)", False), (float("nan"), "(-inf, inf)", False), (True, "[0, inf)", False),
])
def test_in_range(value, spec, inside):
    assert in_range(value, spec) is inside


def test_a_plug_in_problem_declares_ranges_of_its_own_keys(cli, tmp_path, monkeypatch):
    (tmp_path / "plugin_ranges.py").write_text(
        "from speechrecipe.problems.asv import ASV\n"
        "class Narrow(ASV):\n"
        "    value_ranges = {'train.total_steps': '[10, 100]'}\n"
        "from speechrecipe.problems.ks import KeywordSpotting\n"
        "class TopK(KeywordSpotting):\n"
        "    nonempty_lists = {'evaluate.top_k': 'give at least one k'}\n")
    monkeypatch.chdir(tmp_path)
    result = cli("config", "plugin_ranges:Narrow", "train.total_steps=5")
    assert result.exit_code == 2
    assert "error: train.total_steps: 5 is out of range; expected a value in [10, 100]" in result.stderr
    assert ranges_for(ASV)["train.total_steps"] == "[1, inf)"
    # and lists of its own that must not be empty
    result = cli("config", "plugin_ranges:TopK", "evaluate.top_k=[]")
    assert result.exit_code == 2 and "error: evaluate.top_k: [] is empty; give at least one k" in result.stderr


def list_keys() -> dict[str, str]:
    """Every list key of a built-in problem's merged config (its YAML over conf/trainer.yaml) → one such problem."""
    found = {}
    for name in PROBLEMS:
        klass = resolve_problem(name)
        for key, value in flatten(load_config(klass.config_path(), [], []), resolve=False).items():
            if isinstance(value, list):
                found.setdefault(key, name)
    return found


LIST_KEYS = list_keys()


def test_every_list_key_says_whether_it_may_be_empty():
    unclassified = sorted(set(LIST_KEYS) - set(NONEMPTY) - set(MAY_BE_EMPTY))
    assert not unclassified, (f"list keys neither in NONEMPTY nor MAY_BE_EMPTY (speechrecipe/ranges.py): "
                              f"{', '.join(unclassified)}")
    assert not set(NONEMPTY) & set(MAY_BE_EMPTY)
    assert set(NONEMPTY) | set(MAY_BE_EMPTY) <= set(LIST_KEYS), "a key no built-in problem's config has"


@pytest.mark.parametrize("key", sorted(NONEMPTY))
def test_an_empty_list_where_one_value_is_needed_is_one_line_naming_the_key(cli, key):
    result = cli("config", LIST_KEYS[key], f"{key}=[]")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {key}: [] is empty; {NONEMPTY[key]}"


def test_run_refuses_an_empty_tuning_grid_before_any_stage(cli, tmp_path):
    # it used to prepare, train, then fail in stage 3 with "min() arg is an empty sequence"
    for command in (["run"], ["run", "--dry-run"], ["stages"]):
        result = cli(*command, "diarization", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache",
                     "evaluate.tune.thresholds=[]")
        assert result.exit_code == 2, command
        assert "error: evaluate.tune.thresholds: [] is empty; give at least one threshold" in result.stderr
    assert not (tmp_path / "exp").exists() and not (tmp_path / "cache").exists()
    # where [] means something, it passes
    assert cli("config", "ks", "evaluate.top_k=[]").exit_code == 0

