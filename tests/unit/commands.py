"""A command run from a test: its output, or the test fails with what the command said."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from harness.processes import ROOT


def output_of(
    argv: Sequence[str],
    *,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> str:
    """`argv`'s standard output; the test fails with its standard error unless it exits 0."""
    result = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{Path(argv[0]).name} exited {result.returncode}:\n{result.stderr}"
    )
    return result.stdout


def compose_1_29() -> str:
    """Docker Compose 1.x (`docker-compose`); the test is skipped where it is not installed."""
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.skip("docker-compose (1.x) is not installed: `apt-get install docker-compose`")
    return legacy
