"""Shared fixtures: the CLI runner and an isolated cache per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechrecipe.cli import app

REPO = Path(__file__).resolve().parent.parent
MINI_VOX = REPO / "speechrecipe" / "assets" / "mini" / "voxceleb1"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    os.environ["SPEECHRECIPE_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture
def cli():
    """Invoke the real CLI in-process: cli("run", "asv", ...) → Result with exit_code, stdout, stderr."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke
