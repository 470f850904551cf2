"""Installed as users install it: a wheel built from the repository, in a fresh virtual env, run from a
folder outside the repository, has its default configs and mini corpora (list, config, a tiny run)."""
from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
SKIP = shutil.ignore_patterns(".venv", ".git", "exp", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def _sh(*args, cwd: Path) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.e2e
def test_wheel_in_a_fresh_env_runs_from_outside_the_repo(tmp_path):
    source = Path(shutil.copytree(REPO, tmp_path / "source", ignore=SKIP))
    _sh(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("speechrecipe-*.whl")
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    env_site = Path(_sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    # the dependencies (torch, ...) from this test's environment, after the env's own packages; the editable
    # speechrecipe there is not seen (.pth files of a folder named in a .pth are not run)
    (env_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _sh(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cli = env / "bin" / "speechrecipe"
    where = _sh(python, "-c", "import speechrecipe; print(speechrecipe.__file__)", cwd=outside)
    assert where.startswith(str(env_site)), where
    assert "asv" in _sh(cli, "list", cwd=outside)
    assert "dataset_root: " + str(env_site) in _sh(cli, "config", "asv", cwd=outside)
    _sh(cli, "run", "asv", "--target-dir", "exp", "--cache-dir", "cache", "-c", TINY, "train.total_steps=2",
        "train.save_step=2", "train.eval_step=2", "evaluate.test_ckpt_steps=[last]", cwd=outside)
    assert "eer" in json.loads((outside / "exp" / "results" / "results.json").read_text())["voxceleb1_o"]
