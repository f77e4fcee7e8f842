"""One process of the pipeline (or of a benchmark contender), its output kept in files.

A `Proc` starts in a session of its own, so that it and everything it starts can be killed
together, and is reaped with `wait4`, so that a process that exits by itself leaves its exact
CPU time behind. Its JSON log lines are read back with `records()` and `messages()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ABORT_TIMEOUT = 5  # s: a process writes its stacks and dies at once on SIGABRT


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_for_each(
    procs: Sequence[Proc], condition: Callable[[Proc], object], timeout: float, what: str
) -> None:
    """Wait until `condition(proc)` holds for every one of `procs`; on timeout, fail naming the
    processes it does not hold for, each with the tail of its log."""
    try:
        wait_for(lambda: all(condition(proc) for proc in procs), timeout, what)
    except AssertionError as error:
        behind = [proc for proc in procs if not condition(proc)]
        tails = "\n".join(f"--- {proc.name}:\n{proc.tail(8)}" for proc in behind)
        raise AssertionError(f"{error}; not yet: {[p.name for p in behind]}\n{tails}") from None


def python_module(module: str, *args: str) -> list[str]:
    return [PYTHON, "-m", module, *args]


class Proc:
    """A started process; `env` is added to this process's environment unless `inherit=False`,
    which starts it like a container: with `env` and a PATH, nothing else."""

    def __init__(
        self,
        argv: Sequence[str],
        logdir: Path,
        name: str,
        env: Mapping[str, str] | None = None,
        *,
        inherit: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = logdir / f"{name}.out"
        self.stderr_path = logdir / f"{name}.err"
        if inherit:
            base = {**os.environ, "PYTHONPATH": str(ROOT)}
        else:  # as the image sets them
            base = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONUNBUFFERED": "1"}
            base["PYTHONDONTWRITEBYTECODE"] = "1"
        base["PYTHONFAULTHANDLER"] = "1"  # as the image: aborted, it writes its threads' stacks
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env={**base, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self.exit_code: int | None = None
        self.exited_by_itself = False  # rather than killed by `kill()`
        self.rusage_cpu = 0.0  # user + system seconds, once reaped
        self._killed = False
        self._lock = threading.Lock()

    @classmethod
    def module(
        cls, module: str, logdir: Path, name: str, env: Mapping[str, str] | None = None
    ) -> Proc:
        """`python -m MODULE`, with this interpreter."""
        return cls(python_module(module), logdir, name, env)

    # -- life ----------------------------------------------------------------------------------

    def poll(self) -> int | None:
        """Reap the process if it has exited; its exit code, or None while it runs."""
        with self._lock:
            if self.exit_code is None:
                try:
                    pid, status, usage = os.wait4(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere
                    pid, status, usage = self.pid, 0, None
                if pid:
                    self.exit_code = os.waitstatus_to_exitcode(status)
                    self.popen.returncode = self.exit_code
                    self.exited_by_itself = not self._killed
                    if usage is not None:
                        self.rusage_cpu = usage.ru_utime + usage.ru_stime
            return self.exit_code

    @property
    def running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float) -> int:
        """Its exit code. If it is still running after `timeout`, it is aborted, and the failure
        shows its last output and where each of its threads was stuck."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                last_output = self.tail()
                raise AssertionError(
                    f"{self.name} still running after {timeout:g}s; last output:\n{last_output}\n"
                    f"its threads, when aborted:\n{self._abort_for_stacks()}"
                )
            time.sleep(0.02)
        return code

    def _abort_for_stacks(self) -> str:
        """SIGABRT it: Python's fault handler (PYTHONFAULTHANDLER, set for every Proc) writes
        every thread's stack to stderr before the process dies. What it wrote."""
        written = len(self.stderr())
        with contextlib.suppress(OSError):  # no core file left in the repo, whatever ulimit -c says
            resource.prlimit(self.pid, resource.RLIMIT_CORE, (0, 0))
        self.signal(signal.SIGABRT)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: self.poll() is not None, ABORT_TIMEOUT, "the abort")
        return self.stderr()[written:] or "(none written)"

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process alone (not to what it started)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process and everything in its session, and reap it."""
        if self.poll() is None:
            with self._lock:
                self._killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait(10)

    # -- what it wrote -------------------------------------------------------------------------

    def records(self) -> list[dict]:
        """The JSON log records it has written so far."""
        records = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):  # a line still being written
                if line.startswith("{"):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    def messages(self, message: str) -> list[dict]:
        return [r for r in self.records() if r.get("message") == message]

    def errors(self) -> list[dict]:
        return [r for r in self.records() if r.get("level") == "ERROR"]

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory so far (VmHWM), while it runs."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Launcher:
    """Starts `python -m MODULE` processes with a shared environment; `kill_all()` ends them.

    `launcher(module, name, **env)`: the process is named `name` (or the module) and a number,
    so that a restarted process keeps the logs of the one it replaced.
    """

    def __init__(self, logdir: Path, **env: object) -> None:
        self.logdir = logdir
        self.env = {key: str(value) for key, value in env.items()}
        self.procs: list[Proc] = []

    def __call__(self, module: str, name: str | None = None, **env: object) -> Proc:
        full_env = {**self.env, **{key: str(value) for key, value in env.items()}}
        proc = Proc(
            python_module(module), self.logdir, f"{name or module}-{len(self.procs)}", full_env
        )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            proc.kill()
