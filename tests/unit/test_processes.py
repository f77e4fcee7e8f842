"""`harness.processes.Proc`: a process that does not exit in time fails its wait with where it
was stuck, so that a hang in a fault test can be read from the failure alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.processes import PYTHON, Proc

STUCK = """
import threading
print("waiting", flush=True)
threading.Event().wait()  # stuck here for good
"""


def test_a_process_that_does_not_exit_shows_where_each_thread_was(tmp_path: Path) -> None:
    proc = Proc([PYTHON, "-c", STUCK], tmp_path, "stuck")
    with pytest.raises(AssertionError) as failure:
        proc.wait(1)
    message = str(failure.value)
    assert "stuck still running after 1s" in message
    assert "waiting" in message  # its last output
    assert "Current thread" in message and 'File "<string>", line 4' in message  # its stack
    assert proc.poll() is not None  # aborted, not left running


def test_a_process_that_exits_gives_its_code(tmp_path: Path) -> None:
    assert Proc([PYTHON, "-c", "raise SystemExit(3)"], tmp_path, "quick").wait(10) == 3
