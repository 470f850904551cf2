"""The Problem contract: one signature per hook, stage roles, problems from anywhere with their own YAML,
and the docs' "Write a new problem" walkthrough run as written through the real CLI."""
from __future__ import annotations

import inspect
import json
import sys
import textwrap
from pathlib import Path

import pytest

from speechrecipe.engine.problem import HOOKS as CONTRACT, ROLES, Problem
from speechrecipe.registry import PROBLEMS, resolve_problem
from helpers import write_walkthrough

REPO = Path(__file__).resolve().parent.parent
HOOKS = [hook.name for hook in CONTRACT]  # engine/problem.py: the one list of hooks


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_every_builtin_problem_implements_the_hooks_with_the_base_signatures(name):
    assert "unit_statistics" in HOOKS and all(callable(getattr(Problem, hook)) for hook in HOOKS)
    klass = resolve_problem(name)
    for hook in HOOKS:
        base = list(inspect.signature(getattr(Problem, hook)).parameters)
        mine = list(inspect.signature(getattr(klass, hook)).parameters)
        assert mine[: len(base)] == base, f"{name}.{hook}{mine} differs from Problem.{hook}{base}"
        assert all(p.default is not inspect.Parameter.empty
                   for p in list(inspect.signature(getattr(klass, hook)).parameters.values())[len(base):])
    roles = [s.role for s in klass.stages()]
    for role in ("prepare", "report"):
        assert roles.count(role) == 1, (name, roles)
    for role in ("train", "evaluate"):  # dump-feature trains nothing
        assert roles.count(role) <= 1, (name, roles)
    assert set(roles) <= set(ROLES)


@pytest.mark.e2e
def test_the_walkthrough_problem_runs_stages_0_to_4_through_the_cli(cli, tmp_path):
    source = write_walkthrough(tmp_path / "my problems ü")  # a space and a non-ASCII letter on the way
    spec = f"{source}:FolderClassification"
    stages = cli("stages", spec)
    assert stages.exit_code == 0, stages.stderr
    assert [line.split()[0] for line in stages.stdout.splitlines()] == ["0", "1", "2", "3", "4"]

    config = cli("config", spec, "train.total_steps=30")
    assert config.exit_code == 0, config.stderr
    assert "total_steps: 30" in config.stdout and "classes:" in config.stdout and "gradient_clipping" in config.stdout

    target = tmp_path / "exp"
    result = cli("run", spec, "--target-dir", target, "train.total_steps=30", "train.eval_step=15", "train.save_step=15")
    assert result.exit_code == 0, result.stderr
    results = json.loads((target / "results" / "results.json").read_text())
    assert set(results) == {"test"} and 0.0 <= results["test"]["accuracy"] <= 1.0
    assert (target / "checkpoints" / "valid_best.ckpt").is_file() and (target / "classes.json").is_file()
    again = cli("run", spec, "--target-dir", target, "train.total_steps=30", "train.eval_step=15", "train.save_step=15")
    assert again.exit_code == 0 and again.stderr.count("is up to date; skipping") == 5, again.stderr


def test_a_plugin_yaml_is_its_schema_unknown_keys_get_a_suggestion(cli, tmp_path):
    source = write_walkthrough(tmp_path / "plugin")
    result = cli("config", f"{source}:FolderClassification", "prepare_data.clases=[a]")
    assert result.exit_code == 2
    assert "prepare_data.clases: unknown key" in result.stderr and "did you mean prepare_data.classes" in result.stderr
    result = cli("config", f"{source}:FolderClassification", "build_downstream.pooling=3")
    assert result.exit_code == 2 and "build_downstream.pooling: expected str" in result.stderr


def test_a_plugin_module_on_the_path_brings_its_yaml_and_a_subclass_inherits_it(cli, tmp_path, monkeypatch):
    package = tmp_path / "mylab"
    write_walkthrough(package)
    (package / "__init__.py").write_text("")
    (package / "variants.py").write_text(textwrap.dedent('''
        from mylab.folders import FolderClassification

        class WiderFolders(FolderClassification):
            def build_downstream(self, conf, input_dim, num_classes):
                conf.hidden_dim = 96
                return super().build_downstream(conf, input_dim, num_classes)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mylab", "mylab.folders", "mylab.variants"):  # test_cli imports another mylab package
        monkeypatch.delitem(sys.modules, name, raising=False)
    for spec in ("mylab.folders:FolderClassification", "mylab.variants:WiderFolders"):
        result = cli("config", spec)
        assert result.exit_code == 0, result.stderr
        assert "classes:" in result.stdout
    for name in ("mylab", "mylab.folders", "mylab.variants"):  # leave no mylab behind for later tests
        sys.modules.pop(name, None)


def test_a_plugin_pointing_at_a_missing_yaml_or_without_conf_name_is_one_line(cli, tmp_path):
    source = write_walkthrough(tmp_path / "broken")
    source.write_text(source.read_text().replace('default_config = "folders.yaml"', 'default_config = "nowhere.yaml"'))
    result = cli("config", f"{source}:FolderClassification")
    assert result.exit_code == 2 and "FolderClassification.default_config:" in result.stderr
    assert "nowhere.yaml does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    source.write_text(source.read_text().replace('conf_name = "folders"', 'conf_name = ""'))
    result = cli("config", f"{source}:FolderClassification")
    assert result.exit_code == 2 and "sets no conf_name" in result.stderr


NO_TRAIN = '''
import json
from pathlib import Path

from speechrecipe.engine.problem import Problem, stage
from speechrecipe.fileio import atomic_write_json


class CountClips(Problem):
    """A problem with no training stage: list the clips, then report how many there are."""

    conf_name = "count_clips"
    description = "count the clips of a folder"
    default_config = "count.yaml"

    @stage(0, "prepare data", "list the clips", role="prepare", uses=("prepare_data",))
    def prepare_data(self):
        return self.prepare_corpus_cached()

    @stage(1, "report", "count them", role="report", reads=("clips.json",))
    def report_stage(self):
        clips = json.loads(self.paths.manifest("clips").with_suffix(".json").read_text())
        atomic_write_json(self.paths.results / "results.json", {"clips": len(clips)})

    def prepare_corpus(self, out_dir):
        from speechrecipe.data.scan import find_audio

        atomic_write_json(out_dir / "clips.json", [str(p) for p in find_audio(self.dataset_root)])
        return {}
'''


def test_a_problem_without_a_training_stage_runs_and_resumes(cli, tmp_path):
    folder = tmp_path / "count"
    folder.mkdir()
    (folder / "count.py").write_text(NO_TRAIN)
    (folder / "count.yaml").write_text("prepare_data:\n  dataset_root: ${asset:mini/speech_commands/yes}\n")
    spec, target = f"{folder / 'count.py'}:CountClips", tmp_path / "exp"
    dry = cli("run", spec, "--target-dir", target, "--dry-run")
    assert dry.exit_code == 0 and "stage 1 (report): run" in dry.stdout, dry.stdout + dry.stderr
    result = cli("run", spec, "--target-dir", target)
    assert result.exit_code == 0, result.stderr
    assert json.loads((target / "results" / "results.json").read_text()) == {"clips": 22}
    assert cli("run", spec, "--target-dir", target).exit_code == 0
    hint = cli("run", spec, "--target-dir", tmp_path / "other", "--start", "1")
    assert hint.exit_code == 2 and "run with --start 0" in hint.stderr


@pytest.mark.e2e
def test_a_new_cache_layout_prepares_again_instead_of_reading_an_empty_folder(cli, tmp_path, monkeypatch):
    """An experiment prepared under another cache layout (CACHE_FORMAT) must not count stage 0 done
    while its config now maps to a folder that holds nothing (stage 1 would find no train.jsonl)."""
    from speechrecipe.engine import runner

    target, cache = tmp_path / "exp", tmp_path / "cache"
    first = cli("run", "ks", "--stop", "0", "--target-dir", target, "--cache-dir", cache)
    assert first.exit_code == 0, first.stderr
    monkeypatch.setattr(runner, "CACHE_FORMAT", runner.CACHE_FORMAT + 1)
    stages = cli("stages", "ks", "--target-dir", target, "--cache-dir", cache)
    assert "its cache folder is another one now" in stages.stdout, stages.stdout
    again = cli("run", "ks", "--stop", "1", "--target-dir", target, "--cache-dir", cache)
    assert again.exit_code == 0, again.stderr
    assert "stage 0 (prepare data) is stale" in again.stderr and "stage 1 (build encoder) done" in again.stderr
