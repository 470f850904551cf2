"""The standard stages are declared once (engine/recipe.py); stages 2 and 3 depend on every key but the ones
named there; evaluate.test_ckpt_steps evaluates only what is new in every problem; --redo N runs one stage
again; a problem's YAML holds only the engine's keys and the ones its class declares."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from speechrecipe.config import flatten, load_config, under
from speechrecipe.engine import recipe
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.engine.recipe import EVALUATION_KEYS, RUNTIME_KEYS, Recipe
from speechrecipe.engine.runner import Runner
from speechrecipe.registry import PROBLEMS, resolve_problem
from helpers import write_walkthrough

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
TRAINING = [name for name in PROBLEMS if issubclass(resolve_problem(name), Recipe)]
# tiny models and 4 updates, a checkpoint every 2: enough to ask for another checkpoint
TINY = {
    "asv": ("-c", FIXTURES / "tiny_asv.yaml"),
    "asr": ("-c", FIXTURES / "tiny_asr.yaml"),
    "diarization": ("-c", FIXTURES / "tiny_diarization.yaml"),
    "ks": ("build_downstream.tcresnet.width=0.5",),
    "sid": ("build_downstream.xvector.channels=32", "build_downstream.xvector.stats_channels=64",
            "build_downstream.xvector.embedding_dim=32"),
    "intent": ("build_downstream.tcresnet.depth=8", "build_downstream.tcresnet.width=0.5"),
}
STEPS = ("train.total_steps=4", "train.save_step=2", "train.eval_step=2", "train.keep_num_ckpts=0", "train.log_step=2",
         "train.num_workers=0")


def test_every_training_problem_is_a_recipe_and_no_problem_module_declares_stages():
    assert set(TRAINING) == {"asv", "asr", "ks", "sid", "intent", "diarization"}
    for path in (REPO / "speechrecipe" / "problems").glob("*.py"):
        declared = [node.args[0].value for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "stage"]
        own = {"dump_feature.py": [1, 2]}.get(path.name, [])  # dump-feature's dump and verify are its own
        assert declared == own, f"{path.name} declares stages {declared}: the standard ones live in engine/recipe.py"
    for name in TRAINING:
        klass = resolve_problem(name)
        assert [s.number for s in klass.stages()] == [0, 1, 2, 3, 4]
        assert all(getattr(klass, s.method).__module__ in (recipe.__name__, klass.__module__, *(
            k.__module__ for k in klass.__mro__)) for s in klass.stages())
        assert len({s.description for s in klass.stages()}) == 5, f"{name}: each stage says what it does"


@pytest.mark.parametrize("name", TRAINING)
def test_training_and_evaluation_depend_on_every_key_but_the_named_ones(name):
    klass = resolve_problem(name)
    conf = load_config(klass.config_path())
    runner = Runner(klass(conf, ExperimentPaths(Path("unused"), Path("unused"))))
    train, evaluate = (runner.deps(s) for s in klass.stages()[2:4])
    keys = set(flatten(conf))
    runtime = {k for k in keys if any(under(k, r) for r in RUNTIME_KEYS)}
    test_sets = {k for k in keys if any(under(k, t) for t in klass.test_set_keys)}
    assert set(evaluate) == {k for k in keys if not under(k, "report")} - runtime
    only_evaluation = {k for k in keys if under(k, "evaluate") or k in EVALUATION_KEYS} | test_sets
    assert set(train) == set(evaluate) - only_evaluation
    assert "train.total_steps" in train and "seed" in train and "build_optimizer.conf.lr" in train
    assert "evaluate.test_ckpt_steps" in evaluate and "build_batch_sampler.eval_batch_secs" in evaluate


def run(cli, name: str, target: Path, *extra: str):
    return cli("run", name, "--target-dir", target, *TINY[name], *STEPS, *extra)


@pytest.mark.e2e
@pytest.mark.parametrize("name", TRAINING)
def test_asking_for_another_checkpoint_evaluates_only_that_one(cli, tmp_path, name):
    target = tmp_path / name
    first = run(cli, name, target, "evaluate.test_ckpt_steps=[last]")
    assert first.exit_code == 0, first.stderr
    again = run(cli, name, target, "evaluate.test_ckpt_steps=[last,step-2]")
    assert again.exit_code == 0, again.stderr
    assert "stage 2 (train) is up to date; skipping" in again.stderr
    assert "stage 3 (evaluate) is stale: evaluate.test_ckpt_steps ['last'] → ['last', 'step-2']" in again.stderr
    assert re.search(r"step-4 on \S+: already evaluated; skipping", again.stderr)
    evaluated = [Path(p).relative_to(target / "evaluation").parts[0]
                 for p in json.loads((target / "evaluation" / "latest.json").read_text())]
    assert sorted(set(evaluated)) == ["step-2", "step-4"]
    results = json.loads((target / "results" / "results.json").read_text())
    assert {r["checkpoint"] for r in results.values()} <= {"step-2", "step-4"}


@pytest.mark.e2e
def test_redo_runs_one_stage_again_and_only_what_its_output_changes(cli, tmp_path):
    target = tmp_path / "ks"
    assert run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]").exit_code == 0
    weights = (target / "checkpoints" / "step-4.ckpt").read_bytes()
    result_file = target / "evaluation" / "step-4" / "test.json"
    before = result_file.stat().st_mtime_ns

    redo = run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]", "--redo", "3")
    assert redo.exit_code == 0, redo.stderr
    assert "stage 3 (evaluate) is stale: --redo: from scratch" in redo.stderr
    assert "already evaluated" not in redo.stderr and result_file.stat().st_mtime_ns != before
    assert list(target.glob("evaluation.old-*")), "the earlier evaluation is kept aside"
    assert "stage 2 (train) is up to date; skipping" in redo.stderr
    assert (target / "checkpoints" / "step-4.ckpt").read_bytes() == weights  # not retrained
    assert "stage 4 (report best) is up to date" in redo.stderr  # same evaluation, same report
    assert not (target / "redo.json").exists()

    redo = run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]", "--redo", "1")
    assert redo.exit_code == 0, redo.stderr
    assert "stage 1 (build encoder) is stale: --redo" in redo.stderr
    assert "stage 2 (train) is up to date (earlier stages re-ran with the same output)" in redo.stderr

    redo = run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]", "--redo", "2")
    assert redo.exit_code == 0, redo.stderr
    assert "--redo: training from scratch" in redo.stderr and list(target.glob("checkpoints.old-*"))
    assert (target / "checkpoints" / "step-4.ckpt").read_bytes() != b""

    outside = run(cli, "ks", target, "--start", "3", "--redo", "2")
    assert outside.exit_code == 2 and "--redo 2: not among the stages this run runs (3..4)" in outside.stderr


@pytest.mark.e2e
def test_an_interrupted_redo_continues_instead_of_starting_over(cli, tmp_path):
    target = tmp_path / "ks"
    assert run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]").exit_code == 0
    (target / "redo.json").write_text(json.dumps({"stage": 2, "began": 0}))  # a --redo 2 that stopped midway
    (target / "records" / "stage-2.json").unlink()  # a redo forgets the stage's record when it begins
    again = run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]", "--redo", "2")
    assert again.exit_code == 0, again.stderr
    assert "continuing the --redo 2 begun before" in again.stderr
    assert not list(target.glob("checkpoints.old-*")), "the training of the redo is not set aside again"
    assert "training already reached step 4" in again.stderr and not (target / "redo.json").exists()


@pytest.mark.e2e
def test_records_made_under_the_old_rules_are_stale_in_one_line_and_never_retrain(cli, tmp_path):
    target = tmp_path / "ks"
    assert run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]").exit_code == 0
    weights = (target / "checkpoints" / "step-4.ckpt").read_bytes()
    for record in (target / "records").glob("stage-*.json"):  # as an earlier speechrecipe wrote them
        data = json.loads(record.read_text())
        data.pop("rules")
        data["upstream"] = data.pop("inputs")  # the field's earlier name
        if data["stage"] == 2:
            data["deps"] = {k: v for k, v in data["deps"].items() if under(k, "train")}
        record.write_text(json.dumps(data))
    run_file = target / "checkpoints" / "run.json"
    old = json.loads(run_file.read_text())
    old.pop("rules")
    old["upstream"] = old.pop("inputs")
    old["deps"] = {k: v for k, v in old["deps"].items() if under(k, "train")}
    run_file.write_text(json.dumps(old))
    again = run(cli, "ks", target, "evaluate.test_ckpt_steps=[last]")
    assert again.exit_code == 0, again.stderr
    assert "stage 2 (train) is stale: recorded by an earlier speechrecipe (dependency rules 1, now 2)" in again.stderr
    assert "stage 0 (prepare data) is up to date" in again.stderr  # the same deps under both rules
    assert "training already reached step 4" in again.stderr
    assert (target / "checkpoints" / "step-4.ckpt").read_bytes() == weights


def test_a_misspelled_key_or_section_in_a_problems_yaml_is_refused_with_a_suggestion(cli, tmp_path):
    source = write_walkthrough(tmp_path / "plugin")
    spec = f"{source}:FolderClassification"
    yaml_file = source.with_name("folders.yaml")
    text = yaml_file.read_text()
    assert "\ntrain:\n" in text  # the walkthrough's YAML sets engine keys
    yaml_file.write_text(text.replace("  total_steps: 40", "  total_step: 40"))
    result = cli("config", spec)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "train.total_step is not a key of the engine's train section" in result.stderr
    assert "did you mean train.total_steps?" in result.stderr
    yaml_file.write_text(text.replace("build_downstream:", "build_donwstream:"))
    result = cli("run", spec, "--target-dir", tmp_path / "exp")
    assert result.exit_code == 2 and "section build_donwstream is neither one of the engine's" in result.stderr
    assert "did you mean build_downstream?" in result.stderr and not (tmp_path / "exp").exists()
    yaml_file.write_text(text + "\nevaluate:\n  top_k: [1]\n")  # a key the class does not declare
    assert "evaluate.top_k is not a key" in cli("config", spec).stderr
    source.write_text(source.read_text().replace('    default_config = "folders.yaml"',
                                                 '    default_config = "folders.yaml"\n    engine_keys = ("evaluate.top_k",)'))
    assert cli("config", spec).exit_code == 0
