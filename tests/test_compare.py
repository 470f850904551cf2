"""Issue 14: `speechrecipe compare` on real tiny asv runs, through the real CLI."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechrecipe.cli import app
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
MINI_VOX = Path(__file__).resolve().parent.parent / "speechrecipe" / "assets" / "mini" / "voxceleb1"
# as tests/test_cli.py: one validation and one checkpoint evaluated, stages 0-4 in seconds
FAST = ("-c", str(TINY), "train.total_steps=4", "train.log_step=2", "train.save_step=2", "train.eval_step=4",
        "evaluate.test_ckpt_steps=[last]")
LR = "build_optimizer.conf.lr=0.002"


def run_asv(target: Path, *extra: str) -> Path:
    result = CliRunner().invoke(app, ["run", "asv", "--target-dir", str(target), *FAST, *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return target


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny asv runs that differ in the learning rate only."""
    root = tmp_path_factory.mktemp("compare")
    return run_asv(root / "a"), run_asv(root / "b", LR)


@pytest.mark.e2e
def test_compare_shows_exactly_the_key_in_which_two_runs_differ(cli, runs):
    a, b = runs
    result = cli("compare", a, b, "--format", "json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["differing_keys"] == ["build_optimizer.conf.lr"]
    first, second = found["rows"]
    assert [r["config"] for r in found["rows"]] == [{"build_optimizer.conf.lr": 0.001}, {"build_optimizer.conf.lr": 0.002}]
    for row, target in ((first, a), (second, b)):
        result = json.loads((target / "results" / "results.json").read_text())["voxceleb1_o"]
        assert row["value"] == result["eer"] and row["interval"] == result["intervals"]["eer"]
        assert (row["checkpoint"], row["updates"]) == ("step-4", 4) and row["training_s"] > 0 and row["utt_per_s"] > 0
    # the same test set and seed: the difference is bootstrapped on the same resamples
    assert second["vs_first"]["difference"] == pytest.approx(second["value"] - first["value"])
    assert second["vs_first"]["low"] <= second["vs_first"]["difference"] <= second["vs_first"]["high"]
    assert isinstance(second["vs_first"]["beyond_noise"], bool)

    table = cli("compare", a, b).stdout.splitlines()
    assert table[0].startswith("| run | test set | metric | value (95 % interval) |") and table[0].endswith(
        "| build_optimizer.conf.lr |")
    assert table[2].startswith(f"| {a} | voxceleb1_o | eer (%) | {100 * first['value']:.2f} (") and table[2].endswith("| 0.001 |")
    rows = list(csv.reader(io.StringIO(cli("compare", a, b, "--format", "csv").stdout)))
    assert len(rows) == 3 and rows[0][-1] == "build_optimizer.conf.lr" and [r[-1] for r in rows[1:]] == ["0.001", "0.002"]


@pytest.mark.e2e
def test_a_test_set_one_run_lacks_is_a_blank(cli, runs, tmp_path):
    a, _ = runs
    half = tmp_path / "half.txt"
    half.write_text("".join((MINI_VOX / "veri_test2.txt").read_text().splitlines(keepends=True)[:100]))
    sets = f"prepare_data.test_sets=[{{name: voxceleb1_o, trial_file: veri_test2.txt}}, {{name: half, trial_file: '{half}'}}]"
    more = run_asv(Path(shutil.copytree(a, tmp_path / "more")), sets)  # trains nothing: evaluates the new test set
    found = json.loads(cli("compare", a, more, "--format", "json").stdout)
    assert found["differing_keys"] == ["prepare_data.test_sets"]
    rows = {(r["run"], r["test_set"]): r for r in found["rows"]}
    assert set(rows) == {(str(a), "voxceleb1_o"), (str(a), "half"), (str(more), "voxceleb1_o"), (str(more), "half")}
    assert "value" not in rows[(str(a), "half")] and rows[(str(more), "half")]["value"] is not None
    assert rows[(str(more), "voxceleb1_o")]["vs_first"]["difference"] == 0  # the same checkpoint, trials and resamples
    line = next(l for l in cli("compare", a, more).stdout.splitlines() if l.startswith(f"| {a} | half |"))
    assert line.startswith(f"| {a} | half |  |  |  |  |  |  | 4 |")


def test_compare_refuses_a_folder_that_is_no_experiment_and_an_unknown_format(cli, runs, tmp_path):
    for args in ((runs[0], tmp_path), (runs[0], "--format", "xml")):
        result = cli("compare", *args)
        assert result.exit_code == 2
        (line,) = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
        assert ("no config.yaml" in line) if args[1] == tmp_path else ("--format xml: choose markdown, csv, json" in line)


@pytest.mark.e2e
def test_compare_and_status_import_no_torch(runs):
    code = ("import sys; from typer.testing import CliRunner; from speechrecipe.cli import app; "
            f"r = CliRunner().invoke(app, ['compare', {str(runs[0])!r}, {str(runs[1])!r}]); "
            f"s = CliRunner().invoke(app, ['status', {str(runs[1])!r}]); "
            "assert r.exit_code == s.exit_code == 0, r.output + s.output; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runs_on_different_trials_of_one_test_set_get_no_paired_difference(cli, runs, tmp_path):
    """Issue 22: the same test-set name and speakers, but the first 300 trials only: nothing to pair."""
    a, _ = runs
    first = tmp_path / "first300.txt"
    first.write_text("".join((MINI_VOX / "veri_test2.txt").read_text().splitlines(keepends=True)[:300]))
    sets = f"prepare_data.test_sets=[{{name: voxceleb1_o, trial_file: '{first}'}}]"
    fewer = run_asv(Path(shutil.copytree(a, tmp_path / "fewer")), sets)  # evaluates the shorter list with a's checkpoint
    resamples = [json.loads((r / "results" / "bootstrap" / "voxceleb1_o.json").read_text()) for r in (a, fewer)]
    assert resamples[0]["units_digest"] == resamples[1]["units_digest"]  # the same speakers: speaker names alone pair them
    found = json.loads(cli("compare", a, fewer, "--format", "json").stdout)
    diff = found["rows"][1]["vs_first"]
    assert diff["difference"] is None and "different contents of voxceleb1_o" in diff["reason"], diff
    assert set(diff) == {"difference", "reason"}
    line = cli("compare", a, fewer).stdout.splitlines()[3]
    assert f"| none: {diff['reason']} |  |" in line, line
    # the same trials evaluated again are paired: the difference of a checkpoint with itself is 0
    again = run_asv(Path(shutil.copytree(a, tmp_path / "again")))
    assert json.loads(cli("compare", a, again, "--format", "json").stdout)["rows"][1]["vs_first"]["difference"] == 0
