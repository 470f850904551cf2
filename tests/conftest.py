"""Shared fixtures: the CLI runner and an isolated cache per test session; the `e2e` marker.

Tests that run recipes end to end (training, subprocesses, torchrun: seconds to minutes each) carry
`@pytest.mark.e2e`, and so does every test that uses a module fixture that trains (E2E_FIXTURES).
`make test-fast` runs the others (`pytest -m "not e2e"`, under a minute); `make test` runs all.
"""
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


E2E_FIXTURES = {"trained", "runs", "reference", "exp", "awkward_run"}  # module fixtures that train a model first


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "e2e: runs a recipe end to end (seconds to minutes); make test-fast leaves it out")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
