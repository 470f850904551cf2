"""The README's stage tables come from the code's stage declarations."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_stage_tables_match_the_code():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "readme_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_opens_with_the_two_set_up_commands():
    head = (REPO / "README.md").read_text().split("##")[0]
    assert "make demo" in head and "make test" in head
