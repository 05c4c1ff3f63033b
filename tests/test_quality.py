"""The source stays lint- and type-clean: ruff and mypy --strict run as tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "tinyhttp", "tests", "scripts"],
        ["ruff", "format", "--check", "tinyhttp", "scripts"],
        ["mypy", "--strict", "tinyhttp", "scripts"],
    ],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_file_side_never_loads_the_network() -> None:
    # static.py, files.py and every module they import work on plain values and files: no
    # socket and no h11, so they can be tested (and read) with plain function calls.
    code = (
        "import sys, tinyhttp.static, tinyhttp.files; "
        "print(sorted(m for m in ('socket', 'ssl', 'selectors', 'h11') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
