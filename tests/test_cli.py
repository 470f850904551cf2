"""The engine through the real CLI (issue 2): commands, stage records and staleness, --dry-run,
--start checks, resume and --force, status, a user's `module:Class`, exit codes, --clear-cache, the lock.

One tiny experiment is trained once (module fixture); tests that change it work on a copy.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from speechrecipe.cli import app
from speechrecipe.problems.asv import ASV

TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
# one validation (at the last step) and one checkpoint evaluated: stages 0-4 in seconds
FAST = ("-c", str(TINY), "train.total_steps=4", "train.log_step=2", "train.save_step=2", "train.eval_step=4",
        "evaluate.test_ckpt_steps=[last]")
STAGES = [(s.number, s.name) for s in ASV.stages()]


def run(cli, target: Path, *args: str):
    return cli("run", "asv", "--target-dir", target, *FAST, *args)


def stage_states(cli, target: Path, *args: str) -> dict[int, str]:
    """`stages asv --target-dir` as {stage number: its state}."""
    result = cli("stages", "asv", "--target-dir", target, *FAST, *args)
    assert result.exit_code == 0, result.stderr
    rows = [line.split(None, 1) for line in result.stdout.splitlines()]
    return {int(number): rest[16:].strip() for number, rest in rows}


def error_line(result) -> str:
    """The one line the CLI prints for a failure (the rest of stderr is logging)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root except the log, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "log.txt"}


def events(target: Path, kind: str) -> list[dict]:
    lines = (target / "train_log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Stages 0-4 of asv on the mini corpus, run once through the real CLI."""
    target = tmp_path_factory.mktemp("cli") / "exp"
    result = CliRunner().invoke(app, ["run", "asv", "--target-dir", str(target), *FAST], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return target


@pytest.fixture
def exp(trained, tmp_path) -> Path:
    """A copy of the trained experiment that a test may change."""
    return Path(shutil.copytree(trained, tmp_path / "exp"))


USER_MODULE = '''
from speechrecipe.nn.xvector import XVector
from speechrecipe.problems.asv import ASV


class SmallASV(ASV):
    """asv with my own downstream: a narrower x-vector."""

    def build_downstream(self, conf, input_dim):
        return XVector(input_dim, channels=32, stats_channels=64, embedding_dim=48)


class BrokenASV(ASV):
    def build_encoder(self, conf, rows):
        raise RuntimeError("my encoder is broken")


class SlowEvaluation(ASV):
    """Stage 3 marks that it has begun (EVALUATION_MARKER), then fails (BROKEN_EVALUATION) or waits for a signal."""

    def evaluate_test_set(self, task, encoder, test_set, out_dir):
        import os, time
        from pathlib import Path

        Path(os.environ["EVALUATION_MARKER"]).touch()
        if os.environ.get("BROKEN_EVALUATION"):
            raise ValueError("scores are all nan")
        time.sleep(600)
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch) -> Path:
    """tmp_path/mylab/problems.py holding a user's ASV subclasses, importable as mylab.problems."""
    package = tmp_path / "lib" / "mylab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "problems.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(package.parent))
    yield package.parent
    for name in ("mylab", "mylab.problems"):
        sys.modules.pop(name, None)


# ----- list, stages, config ---------------------------------------------------------------------


def test_list_names_every_problem_with_a_description(cli):
    result = cli("list")
    assert result.exit_code == 0
    rows = [line.split(None, 1) for line in result.stdout.splitlines()]
    assert [name for name, _ in rows] == ["asv", "asr", "ks", "sid", "intent", "diarization", "dump-feature"]
    assert rows[0][1] == ASV.description


def test_stages_prints_the_table_declared_in_the_code(cli):
    result = cli("stages", "asv")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"{s.number}  {s.name:16s} {s.description}" for s in ASV.stages()]
    assert STAGES == [(0, "prepare data"), (1, "build encoder"), (2, "train"), (3, "evaluate"), (4, "report best")]


def test_stages_of_a_new_target_dir_are_pending(cli, tmp_path):
    assert set(stage_states(cli, tmp_path / "new").values()) == {"pending"}


@pytest.mark.e2e
def test_stages_of_a_finished_run_are_done_by_their_config(cli, trained):
    states = stage_states(cli, trained)
    for number, _ in STAGES:
        record = json.loads((trained / "records" / f"stage-{number}.json").read_text())
        assert states[number].startswith("done ") and states[number].endswith(f"(config {record['config_digest']})")


def test_changed_stage0_key_makes_it_and_every_later_stage_stale(cli, trained):
    states = stage_states(cli, trained, "prepare_data.num_valid_trials=100")
    assert states[0] == "stale: prepare_data.num_valid_trials 200 → 100"
    # training and evaluation depend on every key but evaluation, report, test-set and run-time keys
    assert all(states[n] == "stale: prepare_data.num_valid_trials 200 → 100" for n in (2, 3))
    assert all(states[n] == "stale: stage 0 runs again before it" for n in (1, 4))


def test_changed_training_key_makes_training_and_later_stages_stale(cli, trained):
    states = stage_states(cli, trained, "build_optimizer.conf.lr=0.01")
    assert states[0].startswith("done") and states[1].startswith("done")
    assert states[2] == "stale: build_optimizer.conf.lr 0.001 → 0.01"
    assert states[3] == "stale: build_optimizer.conf.lr 0.001 → 0.01"  # stage 3 depends on it too
    assert states[4] == "stale: stage 2 runs again before it"
    # keys that do not change what training produces leave everything done
    assert all(s.startswith("done") for s in stage_states(cli, trained, "train.log_step=1", "train.num_workers=2").values())


def test_config_prints_what_run_saves_in_target_dir(cli, trained):
    printed = cli("config", "asv", *FAST)
    assert printed.exit_code == 0
    assert OmegaConf.create(printed.stdout) == OmegaConf.load(trained / "config.yaml")


# ----- a run: outputs, records, re-runs ------------------------------------------------------------


def test_a_run_writes_config_records_checkpoints_and_results(trained):
    assert sorted(p.name for p in (trained / "records").iterdir()) == [f"stage-{n}.json" for n, _ in STAGES]
    assert {"step-2.ckpt", "step-4.ckpt", "valid_best.ckpt", "latest", "run.json"} <= {p.name for p in (trained / "checkpoints").iterdir()}
    results = json.loads((trained / "results" / "results.json").read_text())
    assert set(results) == {"voxceleb1_o"}
    assert results["voxceleb1_o"]["checkpoint"] == "step-4" and results["voxceleb1_o"]["step"] == 4
    assert {"eer", "mindcf_0.01", "mindcf_0.05"} <= set(results["voxceleb1_o"])
    readme = (trained / "results" / "README.md").read_text()
    row, eer = results["voxceleb1_o"], results["voxceleb1_o"]["intervals"]["eer"]
    assert f"| voxceleb1_o | step-4 (step 4) | {100 * row['eer']:.2f} ({100 * eer['low']:.2f}–{100 * eer['high']:.2f}) |" in readme
    assert "speechrecipe run asv" in (trained / "log.txt").read_text()


@pytest.mark.e2e
def test_config_yaml_is_written_before_stage_work(cli, tmp_path):
    target, missing = tmp_path / "exp", tmp_path / "no-corpus"
    result = run(cli, target, f"prepare_data.dataset_root={missing}")
    assert result.exit_code == 1  # a data failure, not a usage error
    assert error_line(result).startswith(f"error: prepare_data.dataset_root: {missing} does not exist")
    assert OmegaConf.load(target / "config.yaml").prepare_data.dataset_root == str(missing)
    assert not (target / "records").exists()


def test_rerun_skips_done_stages_with_a_log_line(cli, exp):
    before = snapshot(exp)
    result = run(cli, exp)
    assert result.exit_code == 0, result.stderr
    for number, name in STAGES:
        assert f"stage {number} ({name}) is up to date; skipping" in result.stderr.splitlines()
    assert snapshot(exp) == before


def test_dry_run_prints_the_plan_and_runs_nothing(cli, tmp_path, exp):
    target = tmp_path / "new"
    result = run(cli, target, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"stage {n} ({name}): run [pending]" for n, name in STAGES]
    assert not target.exists()

    before = snapshot(exp)
    result = run(cli, exp, "--dry-run", "train.total_steps=6")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "config differs from saved config.yaml: train.total_steps 4 → 6"
    assert lines[1].startswith("stage 0 (prepare data): skip [done ")
    assert lines[3] == "stage 2 (train): run [stale: train.total_steps 4 → 6 (training continues from the latest checkpoint)]"
    assert lines[4] == "stage 3 (evaluate): run [stale: train.total_steps 4 → 6]"
    assert snapshot(exp) == before


def test_start_requires_earlier_stages(cli, tmp_path, exp):
    fresh = tmp_path / "fresh"
    result = run(cli, fresh, "--start", "2")
    assert result.exit_code == 2
    assert error_line(result) == f"error: stage 0 (prepare data) has not run in {fresh}; run with --start 0"
    assert not (fresh / "checkpoints").exists()

    result = run(cli, exp, "--start", "2", "prepare_data.num_valid_trials=100")
    assert result.exit_code == 2
    assert error_line(result) == (f"error: stage 0 (prepare data) is stale (prepare_data.num_valid_trials 200 → 100) "
                                  f"in {exp}; run with --start 0")

    (exp / "records" / "stage-1.json").unlink()
    result = run(cli, exp, "--start", "2", "--dry-run")
    assert result.exit_code == 2
    assert error_line(result) == f"error: stage 1 (build encoder) has not run in {exp}; run with --start 1"


def test_stage_range_is_checked(cli, tmp_path):
    result = run(cli, tmp_path / "exp", "--start", "3", "--stop", "1")
    assert result.exit_code == 2 and error_line(result) == "error: --start 3 is after --stop 1"
    result = run(cli, tmp_path / "exp", "--stop", "9")
    assert result.exit_code == 2 and error_line(result) == "error: --stop 9: asv has stages 0..4"


# ----- resume, refusal, --force ---------------------------------------------------------------------


def test_changed_training_key_refuses_without_force_and_names_the_difference(cli, exp):
    before = snapshot(exp)
    result = run(cli, exp, "build_optimizer.conf.lr=0.01")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: {exp / 'checkpoints'} holds training from another config or data (build_optimizer.conf.lr 0.001 → 0.01); "
        "rerun with --force to train again from scratch (old checkpoints are kept aside), or use another --target-dir")
    assert snapshot(exp) == before  # config.yaml too: the refused config is not saved


@pytest.mark.e2e
def test_total_steps_may_change_and_training_continues(cli, exp):
    result = run(cli, exp, "train.total_steps=6", "--stop", "2")
    assert result.exit_code == 0, result.stderr
    assert f"resuming from {exp / 'checkpoints' / 'step-4.ckpt'} (step 4)" in result.stderr
    assert [e["step"] for e in events(exp, "train")] == [2, 4, 6]
    assert len(events(exp, "resume")) == 1
    assert (exp / "checkpoints" / "step-6.ckpt").is_file()
    states = stage_states(cli, exp, "train.total_steps=6")
    assert states[2].startswith("done") and states[3] == "stale: train.total_steps 4 → 6; stage 2 re-ran since"


@pytest.mark.e2e
def test_force_moves_old_checkpoints_aside_and_trains_again(cli, exp):
    old_checkpoints = snapshot(exp / "checkpoints")
    old_log = (exp / "train_log.jsonl").read_bytes()
    old_results = {f"{d}/{name}": data for d in ("evaluation", "results") for name, data in snapshot(exp / d).items()}
    result = run(cli, exp, "build_optimizer.conf.lr=0.01", "train.total_steps=2", "--stop", "2", "--force")
    assert result.exit_code == 0, result.stderr
    (aside,) = exp.glob("checkpoints.old-*")
    assert (f"--force: config changed (build_optimizer.conf.lr 0.001 → 0.01); old checkpoints, evaluation and results "
            f"moved to {aside}") in result.stderr
    assert snapshot(aside) == {**old_checkpoints, "train_log.jsonl": old_log, **old_results}
    assert not (exp / "evaluation").exists() and not (exp / "results").exists()  # of the old training only
    assert sorted(p.name for p in (exp / "checkpoints").glob("*.ckpt")) == ["step-2.ckpt", "valid_best.ckpt"]
    assert json.loads((exp / "checkpoints" / "run.json").read_text())["deps"]["build_optimizer.conf.lr"] == 0.01
    assert [e["step"] for e in events(exp, "train")] == [2]  # a fresh training log: no resume
    assert "resuming" not in result.stderr


def test_changed_data_refuses_to_resume_old_checkpoints(cli, exp):
    """Stage 0 re-runs with another validation split; the checkpoints were trained on the old data."""
    result = run(cli, exp, "prepare_data.valid_count=3", "--stop", "2")
    assert result.exit_code == 2
    # training depends on prepare_data.valid_count itself: refused before any stage runs
    assert "(prepare_data.valid_count 2 → 3); rerun with --force" in error_line(result)
    assert "stage 0 (prepare data) done" not in result.stderr and "resuming" not in result.stderr


@pytest.mark.e2e
def test_adding_a_test_set_keeps_training_and_evaluates_only_the_new_one(cli, exp, tmp_path):
    """Training reads train/valid manifests and the encoder, not the test sets: a new one costs no retraining."""
    veri = Path(OmegaConf.load(exp / "config.yaml").prepare_data.dataset_root) / "veri_test2.txt"
    half = tmp_path / "half.txt"
    half.write_text("".join(veri.read_text().splitlines(keepends=True)[:100]))
    before = snapshot(exp)
    sets = f"prepare_data.test_sets=[{{name: voxceleb1_o, trial_file: veri_test2.txt}}, {{name: half, trial_file: '{half}'}}]"
    result = run(cli, exp, sets)
    assert result.exit_code == 0, result.stderr
    for number in (1, 2):
        assert f"stage {number} ({STAGES[number][1]}) is up to date (earlier stages re-ran with the same output)" in result.stderr
    assert "resuming" not in result.stderr and "stage 2 (train):" not in result.stderr
    assert all(before[name] == (exp / name).read_bytes() for name in before if name.startswith("checkpoints/"))
    assert "step-4 on voxceleb1_o: already evaluated; skipping" in result.stderr
    assert len((exp / "evaluation" / "step-4" / "half.scores").read_text().splitlines()) == 100
    assert set(json.loads((exp / "results" / "results.json").read_text())) == {"voxceleb1_o", "half"}

    # the same name with another trial list is evaluated again
    other = tmp_path / "other.txt"
    other.write_text("".join(veri.read_text().splitlines(keepends=True)[100:150]))
    again = run(cli, exp, sets.replace(str(half), str(other)))
    assert again.exit_code == 0, again.stderr
    assert "step-4 on half: already evaluated" not in again.stderr and "step-4 on voxceleb1_o: already evaluated" in again.stderr
    assert len((exp / "evaluation" / "step-4" / "half.scores").read_text().splitlines()) == 50


# ----- status ---------------------------------------------------------------------------------------


def test_status_reports_stages_checkpoints_best_validation_and_results(cli, trained):
    result = cli("status", trained)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"experiment {trained}"
    for (number, name), line in zip(STAGES, lines[1:6]):
        assert line.startswith(f"  stage {number} ({name}): done ") and "stale" not in line
    assert lines[6] == "run: none live (no lock)"
    assert lines[7].startswith("training: step 4 of 4, loss ") and " utt/s, " in lines[7] and "ETA" not in lines[7]
    assert lines[8] == "checkpoints: valid_best, step-2, step-4"
    (valid,) = events(trained, "valid")
    assert lines[9] == f"best validation so far: eer={100 * valid['eer']:.2f} % at step 4"  # the results tables' units
    best = json.loads((trained / "results" / "results.json").read_text())["voxceleb1_o"]
    pct = {k: f"{100 * best[k]:.2f} ({100 * best['intervals'][k]['low']:.2f}–{100 * best['intervals'][k]['high']:.2f})"
           for k in ("eer",)}
    assert lines[10:] == ["results:", f"  voxceleb1_o: step-4 (step 4) eer={pct['eer']} % mindcf_0.01="
                                      f"{best['mindcf_0.01']:.4f} ({best['intervals']['mindcf_0.01']['low']:.4f}–"
                                      f"{best['intervals']['mindcf_0.01']['high']:.4f}) mindcf_0.05={best['mindcf_0.05']:.4f} "
                                      f"({best['intervals']['mindcf_0.05']['low']:.4f}–{best['intervals']['mindcf_0.05']['high']:.4f}); "
                                      f"best on test (oracle): step-4 eer={100 * best['eer']:.2f} %"]


def test_status_flags_stages_whose_earlier_stage_re_ran(cli, exp):
    record = json.loads((exp / "records" / "stage-2.json").read_text())
    record["deps"]["train.total_steps"] = 5  # as if stage 2 ran again with another total
    (exp / "records" / "stage-2.json").write_text(json.dumps(record))
    lines = cli("status", exp).stdout.splitlines()
    assert lines[4].endswith("(stale: stage 2 re-ran since)") and lines[5].endswith("(stale: stage 2 re-ran since)")


def test_status_of_a_folder_that_is_no_experiment(cli, tmp_path):
    result = cli("status", tmp_path)
    assert result.exit_code == 2
    assert error_line(result) == f"error: {tmp_path} is not an experiment folder (no config.yaml); give the --target-dir of a run"


def run_line_and_last_run(cli, target: Path) -> list[str]:
    """The lines of `status` about runs: the lock's (with the stage a live run is in) and how the last run ended."""
    result = cli("status", target)
    assert result.exit_code == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith(("run: ", "last run: "))]


def test_status_after_a_crash_in_stage_0_says_where_and_why(cli, tmp_path):
    """Issue 23.6: not only "no stage has finished yet"."""
    target, missing = tmp_path / "exp", tmp_path / "missing"
    assert run(cli, target, f"prepare_data.dataset_root={missing}").exit_code == 1
    result = cli("status", target)
    assert "  no stage has finished yet" in result.stdout.splitlines()
    assert run_line_and_last_run(cli, target) == [
        "run: none live (no lock)", f"last run: failed in stage 0 (prepare data): prepare_data.dataset_root: {missing} does not exist"]
    assert f"ERROR speechrecipe.run: failed in stage 0 (prepare data): prepare_data.dataset_root: {missing} does not exist" \
        in (target / "log.txt").read_text()


@pytest.mark.e2e
def test_status_after_a_crash_in_stage_3_names_the_stage_and_the_exception(cli, exp, user_package, monkeypatch):
    monkeypatch.setenv("EVALUATION_MARKER", str(exp / "marker"))
    monkeypatch.setenv("BROKEN_EVALUATION", "1")
    result = cli("run", "mylab.problems:SlowEvaluation", "--target-dir", exp, *FAST, "--redo", "3")
    assert result.exit_code == 1
    assert error_line(result) == f"error: ValueError: scores are all nan (full traceback in {exp / 'log.txt'})"
    assert run_line_and_last_run(cli, exp) == [
        "run: none live (no lock)", "last run: failed in stage 3 (evaluate): ValueError: scores are all nan"]
    # a run that finishes clears it
    assert run(cli, exp).exit_code == 0
    assert run_line_and_last_run(cli, exp) == ["run: none live (no lock)"]


@pytest.mark.e2e
def test_sigint_in_stage_3_is_one_line_on_the_console_and_in_the_log_and_status_shows_the_live_stage(cli, exp, user_package):
    marker = exp / "marker"
    env = {**os.environ, "PYTHONPATH": str(user_package), "EVALUATION_MARKER": str(marker)}
    process = subprocess.Popen([sys.executable, "-m", "speechrecipe", "run", "mylab.problems:SlowEvaluation",
                                "--target-dir", str(exp), *FAST, "--redo", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        from helpers import wait_for

        wait_for(marker.is_file, process)
        assert run_line_and_last_run(cli, exp) == [f"run: live (pid {process.pid}), in stage 3 (evaluate)"]
        assert [line for line in cli("status", exp).stdout.splitlines() if line.startswith("  stage 2")][0].startswith(
            "  stage 2 (train): done")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    line = "interrupted during stage 3 (evaluate); run the same command again to resume"
    assert process.returncode == 130
    assert [x for x in stderr.splitlines() if x.startswith("error: ")] == [f"error: {line}"]
    assert "Traceback" not in stderr
    assert f"ERROR speechrecipe.run: {line}" in (exp / "log.txt").read_text()
    assert run_line_and_last_run(cli, exp) == ["run: none live (no lock)", f"last run: {line}"]


# ----- a user's own problem class ----------------------------------------------------------------------


@pytest.mark.e2e
def test_user_subclass_by_module_and_class_overrides_a_builder(cli, tmp_path, user_package):
    import torch

    target = tmp_path / "mine"
    result = cli("run", "mylab.problems:SmallASV", "--target-dir", target, *FAST, "train.total_steps=2", "--stop", "2")
    assert result.exit_code == 0, result.stderr
    state = torch.load(target / "checkpoints" / "step-2.ckpt", weights_only=True)
    assert state["model"]["downstream.segment.weight"].shape[0] == 48  # the subclass's downstream, not the config's 64

    # in a fresh process, found through PYTHONPATH; stages come from the parent class
    env = {**os.environ, "PYTHONPATH": str(user_package)}
    shown = subprocess.run([sys.executable, "-m", "speechrecipe", "stages", "mylab.problems:SmallASV"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == cli("stages", "asv").stdout


@pytest.mark.e2e
def test_exit_codes_one_error_line_and_traceback_in_the_log(cli, tmp_path, user_package):
    def speechrecipe(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(user_package)}
        return subprocess.run([sys.executable, "-m", "speechrecipe", *map(str, args)],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    ok = speechrecipe("config", "asv", *FAST)
    assert ok.returncode == 0 and ok.stderr == ""

    usage = speechrecipe("config", "asv", "train.total_step=3")
    assert usage.returncode == 2
    assert usage.stderr == "error: train.total_step: unknown key (override); did you mean train.total_steps?\n"

    target = tmp_path / "broken"
    failed = speechrecipe("run", "mylab.problems:BrokenASV", "--target-dir", target, *FAST)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: RuntimeError: my encoder is broken (full traceback in {target / 'log.txt'})"]
    assert "Traceback" not in failed.stderr
    logged = (target / "log.txt").read_text()
    assert "Traceback (most recent call last)" in logged and 'raise RuntimeError("my encoder is broken")' in logged

    verbose = cli("run", "mylab.problems:BrokenASV", "--target-dir", target, *FAST, "--verbose")
    assert verbose.exit_code == 1 and 'raise RuntimeError("my encoder is broken")' in verbose.stderr


# ----- cache, lock ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_clear_cache_empties_this_problems_cache_and_prepares_again(cli, tmp_path):
    target, cache = tmp_path / "exp", tmp_path / "cache"
    assert run(cli, target, "--cache-dir", cache, "--stop", "1").exit_code == 0
    (prepared,) = [p for p in (cache / "asv").iterdir() if not p.name.startswith(".")]  # .locks: the leases
    (cache / "asv" / "left-over").write_text("x")
    other_problem = cache / "asr" / "kept"
    other_problem.parent.mkdir()
    other_problem.write_text("x")

    dry = run(cli, target, "--cache-dir", cache, "--stop", "1", "--clear-cache", "--dry-run")
    assert dry.exit_code == 0 and (cache / "asv" / "left-over").exists()

    result = run(cli, target, "--cache-dir", cache, "--stop", "1", "--clear-cache")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert f"--clear-cache: deleted {prepared}" in lines
    assert f"prepared data in {prepared}: " in result.stderr
    # same data prepared again: the encoder stage stays done
    assert "stage 1 (build encoder) is up to date (earlier stages re-ran with the same output); skipping" in lines
    assert not (cache / "asv" / "left-over").exists() and other_problem.exists()


@pytest.mark.e2e
def test_a_copied_target_dir_with_another_cache_dir_prepares_there(cli, exp, tmp_path):
    cache = tmp_path / "other-cache"
    states = stage_states(cli, exp, "--cache-dir", cache)
    assert states[0].startswith("stale: 6 files it wrote are missing (first: " + str(cache / "asv"))
    result = run(cli, exp, "--cache-dir", cache)
    assert result.exit_code == 0, result.stderr
    assert all(f"stage {n} ({name}) is up to date" in result.stderr for n, name in STAGES[1:])
    assert (cache / "asv").is_dir()


def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(cli, exp):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (exp / ".lock").write_text(f"{holder.pid}@{socket.gethostname()}")
        before = snapshot(exp)
        result = run(cli, exp)
        assert result.exit_code == 1
        assert error_line(result) == (f"error: {exp} is in use by a live run (pid {holder.pid}); "
                                      "wait for it to finish or use another --target-dir (if `ps -p "
                                      f"{holder.pid} -o args` shows no speechrecipe run, delete {exp / '.lock'})")
        assert snapshot(exp) == before
    finally:
        holder.kill()
        holder.wait()
    result = run(cli, exp)
    assert result.exit_code == 0, result.stderr
    assert f"taking over {exp / '.lock'} left by pid {holder.pid}, which is no longer running" in result.stderr
    assert not (exp / ".lock").exists()


# ----- start-up --------------------------------------------------------------------------------------

NO_TORCH = """
import json, sys
from speechrecipe.cli import app
imported = {}
for argv in (["--help"], ["list"], ["stages", "asv"], ["config", "asv"]):
    try:
        app(argv)
    except SystemExit as stop:
        assert not stop.code, (argv, stop.code)
    imported[" ".join(argv)] = "torch" in sys.modules
print(json.dumps(imported), file=sys.stderr)
"""


@pytest.mark.e2e
def test_help_list_stages_and_config_do_not_import_torch():
    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.splitlines()[-1]) == {"--help": False, "list": False, "stages asv": False,
                                                          "config asv": False}
