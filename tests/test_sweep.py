"""Issue 30: `speechrecipe sweep`: a 2×2 grid on tiny data through the CLI, its comparison, the best member chosen
on validation, a killed sweep resumed without redoing finished members; how values are split."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechrecipe.engine.sweep import members, parse_grid, split_values
from speechrecipe.errors import ConfigError

TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
GRID = ["build_optimizer.conf.lr=1e-3,3e-3", "build_dataset.crop_secs=0.5,1.0"]
FIXED = ["train.total_steps=4", "train.eval_step=2", "train.save_step=2", "train.log_step=2"]
NAMES = ["lr=1e-3,crop_secs=0.5", "lr=1e-3,crop_secs=1.0", "lr=3e-3,crop_secs=0.5", "lr=3e-3,crop_secs=1.0"]


def test_values_split_on_top_level_commas_only():
    assert split_values('1e-3,[a,b],"c,d",{x: 1, y: 2}') == ["1e-3", "[a,b]", '"c,d"', "{x: 1, y: 2}"]
    axes, fixed = parse_grid(["a.lr=1,2", "b=[1,2]", "c='x,y'", "d.lr=3,4,5"])
    assert axes == [("a.lr", ["1", "2"]), ("d.lr", ["3", "4", "5"])] and fixed == ["b=[1,2]", "c='x,y'"]
    assert [m.name for m in members(axes)][:2] == ["a.lr=1,d.lr=3", "a.lr=1,d.lr=4"]  # same last part: more of the key
    for bad, why in ((["x=1"], "no key to sweep"), (["x=1,"], "empty value"), (["x=[1,2"], "unclosed"),
                     (["x=1,2", "x=3,4"], "swept twice")):
        with pytest.raises(ConfigError, match=why):
            parse_grid(bad)


def sweep_command(target: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "sweep", "asv", "--target-dir", str(target), "--cache-dir", str(cache),
            "-c", str(TINY), *GRID, *FIXED, *extra]


@pytest.mark.e2e
def test_a_2x2_sweep_compares_members_picks_on_validation_and_resumes_after_a_kill(tmp_path):
    target, cache = tmp_path / "sweep", tmp_path / "cache"
    # killed while the second member runs (one process group: the sweep and its member)
    process = subprocess.Popen(sweep_command(target, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    state = target / "sweep_state.json"
    deadline = time.time() + 600
    while not (state.is_file() and len(json.loads(state.read_text())) == 1):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    first = target / NAMES[0] / "checkpoints" / "valid_best.ckpt"
    made = first.stat().st_mtime_ns

    result = subprocess.run(sweep_command(target, cache), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"member {NAMES[0]}: finished before with the same command; skipped" in result.stderr
    assert first.stat().st_mtime_ns == made  # the finished member was not redone
    summary = json.loads((target / "sweep.json").read_text())
    assert [m["name"] for m in summary["members"]] == NAMES
    assert sorted(r["run"] for r in summary["rows"]) == NAMES
    valid = {m["name"]: m["validation"]["value"] for m in summary["members"]}
    assert summary["best"] == min(valid, key=valid.get)  # eer: lower is better; chosen on validation
    markdown = (target / "sweep.md").read_text()
    assert f"Best member by validation: **{summary['best']}**" in markdown and "| lr=3e-3,crop_secs=1.0 |" in markdown
    assert (target / "sweep.png").stat().st_size > 1000
    assert markdown.splitlines()[0] in result.stdout

    # every member finished: a rerun skips them all, runs nothing, and writes the same table
    again = subprocess.run(sweep_command(target, cache), capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr.count("skipped") == 4


def test_a_bad_member_config_is_refused_before_any_runs(cli, tmp_path):
    result = cli("sweep", "asv", "--target-dir", tmp_path / "s", "train.total_steps=4,-1")
    assert result.exit_code == 2 and "train.total_steps" in result.stderr and not (tmp_path / "s").exists()
