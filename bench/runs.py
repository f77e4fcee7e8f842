"""Measuring, once for every contender: a vhost per run, its processes, deadlines and figures.

A contender describes a run as a `Plan`: the consumer processes (stages and sink), the queues
that must have consumers before publishing starts, and the publisher process. `run_plan` then:

1. creates a virtual host of its own (rabbitmqctl) and starts the consumers in it;
2. waits (with a deadline) until every queue of `ready` has its consumers;
3. samples each process's CPU time, starts the publisher;
4. follows the sink's results file (one JSON line per completed message) until N distinct
   messages completed, or nothing completed for `stall` seconds, or the run's deadline passed;
5. samples CPU (`/proc/PID/stat` utime+stime) and peak RSS (`/proc/PID/status` VmHWM) of every
   process and its descendants just before stopping them (a process that exits by itself is
   measured exactly by `wait4`), kills them, deletes the vhost.

Latency is `completed_at - created_at` from the timestamps carried in the message: `created_at`
set by the publisher when it creates a message, `completed_at` when the sink sees it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pika.exceptions

from bench.hop_steps import hop_steps
from common.topology import SINK_QUEUE, STAGES
from harness.broker import Vhost
from harness.processes import PYTHON, Proc, python_module
from last.tally import percentile

try:
    import psutil
except ImportError:  # pragma: no cover - requirements-bench.txt installs it
    psutil = None

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.25


def median(values: Sequence[float]) -> float:
    finite = sorted(v for v in values if v is not None and not math.isnan(v))
    if not finite:
        return math.nan
    middle = len(finite) // 2
    return finite[middle] if len(finite) % 2 else (finite[middle - 1] + finite[middle]) / 2


@dataclass(frozen=True)
class ProcSpec:
    """A process of a contender: `role` is publisher, stage or sink."""

    name: str
    role: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _PidSample:
    cpu: float = 0.0  # seconds of user + system time
    hwm_kib: int = 0


def _read_pid(pid: int) -> _PidSample | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    hwm = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
            break
    return _PidSample(cpu, hwm)


def _descendants(pid: int) -> list[int]:
    if psutil is None:
        return []
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


class Metered:
    """A contender's process (the shared `harness.processes.Proc`), with its CPU time and peak
    memory sampled, its descendants' included."""

    def __init__(self, spec: ProcSpec, logdir: Path) -> None:
        self.spec = spec
        self.proc = Proc(spec.argv, logdir, spec.name, spec.env)
        self.pid = self.proc.pid
        self._samples: dict[int, _PidSample] = {}
        self._baseline: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def exit_code(self) -> int | None:
        return self.proc.exit_code

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        with contextlib.suppress(AssertionError):
            return self.proc.wait(timeout)
        return None

    def kill(self) -> None:
        self.proc.kill()

    def interrupt(self) -> None:
        """SIGINT to the process alone (py-spy writes its profile on it)."""
        self.proc.signal(signal.SIGINT)

    def tail(self, lines: int = 8) -> str:
        return self.proc.tail(lines)

    def sample(self) -> None:
        """Record CPU time and peak RSS of the process and its descendants, if it still runs."""
        if self.proc.exit_code is not None:
            return
        for pid in [self.pid, *_descendants(self.pid)]:
            sample = _read_pid(pid)
            if sample is None:
                continue
            with self._lock:
                # Both only grow; an exiting process has CPU time but no memory left to show.
                before = self._samples.get(pid, sample)
                sample.cpu = max(sample.cpu, before.cpu)
                sample.hwm_kib = max(sample.hwm_kib, before.hwm_kib)
                self._samples[pid] = sample

    def mark_baseline(self) -> None:
        """CPU spent so far (start-up, imports, connecting) is not charged to the workload."""
        self.sample()
        with self._lock:
            self._baseline = {pid: s.cpu for pid, s in self._samples.items()}

    def cpu_seconds(self) -> float:
        with self._lock:
            if self.proc.exited_by_itself:  # measured exactly by wait4
                return self.proc.rusage_cpu - self._baseline.get(self.pid, 0.0)
            return sum(s.cpu - self._baseline.get(pid, 0.0) for pid, s in self._samples.items())

    def peak_rss_kib(self) -> int:
        """Largest peak RSS (VmHWM, last sampled) of any one process of this process's tree.

        Not wait4's ru_maxrss: Linux carries the forking parent's peak over into the child
        across exec, so for a child of this (large) runner it says the runner's size."""
        with self._lock:
            return max((s.hwm_kib for s in self._samples.values()), default=0)

    def processes(self) -> int:
        with self._lock:
            return max(1, len(self._samples))


class Sampler:
    """Samples every process a few times a second, so processes that come and go are seen."""

    def __init__(self, procs: list[Metered]) -> None:
        self._procs = procs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            for proc in list(self._procs):
                proc.poll()
                proc.sample()


def broker_pids(urls: Sequence[str]) -> list[int] | None:
    """The broker's OS processes, if they run on this machine (for their CPU time): the process
    listening on each node's AMQP port (one node, or each node of a cluster). None if any of
    them is not found here. (Other RabbitMQ nodes may run here too, and rabbitmqctl runs an
    Erlang VM of its own.)"""
    if psutil is None:
        return None
    ports = {urlsplit(url).port or 5672 for url in urls}
    pids: dict[int, int] = {}
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port in ports:
                pids[connection.laddr.port] = connection.pid
    return sorted(pids.values()) if len(pids) == len(ports) else None


def broker_cpu(pids: list[int] | None) -> float | None:
    if pids is None:
        return None
    samples = [_read_pid(pid) for pid in pids]
    return sum(s.cpu for s in samples if s) if all(samples) else None


class Completions:
    """Follows a sink's results file: one JSON object per line.

    Two shapes are understood: this project's `last` (`{"message": "completed",
    "broker_message_id": ..., "data": {"created_at": ..., "completed_at": ...}}`) and the bench
    sinks' (`{"id": ..., "created_at": ..., "completed_at": ...}`). A message seen twice is
    counted once (and as a duplicate).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.created: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.stamps: dict[str, dict[str, float]] = {}
        self.duplicates = 0

    def poll(self) -> int:
        try:
            with self.path.open("r", encoding="utf-8") as results:
                results.seek(self._offset)
                chunk = results.read()
                self._offset = results.tell()
        except FileNotFoundError:
            return len(self.completed)
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._take(line)
        return len(self.completed)

    def _take(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        if "data" in record:  # this project's `last`
            if record.get("message") not in ("completed", "duplicate"):
                return
            key = record.get("broker_message_id")
            stamps = record["data"]
            created, completed = stamps.get("created_at"), stamps.get("completed_at")
        else:
            key, created, completed = (
                record.get("id"),
                record.get("created_at"),
                record.get("completed_at"),
            )
            stamps = record.get("stamps") or {}
        if key is None or created is None or completed is None:
            return
        if key in self.completed:
            self.duplicates += 1
            return
        self.created[key] = float(created)
        self.completed[key] = float(completed)
        if isinstance(stamps, dict):
            self.stamps[key] = {
                stage: float(stamps[stage]) for stage in STAGES if stage in stamps
            } | {"created_at": float(created), "completed_at": float(completed)}

    def latencies(self) -> list[float]:
        return sorted(self.completed[key] - self.created[key] for key in self.completed)

    def hops(self) -> dict[str, tuple[float, float]]:
        """p50 and p99 (ms) of each hop, from the stages' timestamps, where messages carry them:
        publisher -> service_a, service_a -> service_b, ..., service_c -> sink."""
        figures = {}
        for start, end in itertools.pairwise(("created_at", *STAGES, "completed_at")):
            times = sorted(
                (s[end] - s[start]) * 1000 for s in self.stamps.values() if start in s and end in s
            )
            if times:
                figures[f"{start}->{end}"] = (percentile(times, 0.5), percentile(times, 0.99))
        return figures


@dataclass(frozen=True)
class RunSpec:
    """What one run asks of a contender."""

    label: str
    messages: int
    logdir: Path
    rate: float = 0.0  # messages per second offered by the publisher; 0 = as fast as it can
    queue_type: str = "quorum"
    env: Mapping[str, str] = field(default_factory=dict)  # more settings for every process
    replicas: int = 1  # of the middle stage (service_b): the scaling experiment
    work: float = 0.0  # seconds of simulated work per message in service_b
    profile: bool = False  # record the middle stage and the sink with py-spy
    probe: bool = False  # run this project's processes under bench.hop_probe (its steps)

    @property
    def results(self) -> Path:
        return self.logdir / "results.jsonl"

    @property
    def hop_log(self) -> Path:
        """Where `bench.hop_probe` writes each message's steps, when `probe`."""
        return self.logdir / "hops.jsonl"

    def bench_env(self, vhost: Vhost) -> dict[str, str]:
        """The environment of the bench's own contenders' processes (see bench.wire)."""
        return {
            "BENCH_AMQP_URL": vhost.url,
            "BENCH_QUEUE_TYPE": self.queue_type,
            "BENCH_RESULTS": str(self.results),
        }


def standard_plan(module: str, vhost: Vhost, spec: RunSpec, *, stages: Sequence[str]) -> Plan:
    """A bench contender's run: `python -m MODULE stage QUEUE` for each stage, `... sink`,
    then `... publish N RATE`; ready once each stage queue and the sink's have a consumer."""
    env = spec.bench_env(vhost)
    consumers = [
        ProcSpec(queue, "stage", python_module(module, "stage", queue), env) for queue in stages
    ]
    consumers.append(ProcSpec("sink", "sink", python_module(module, "sink"), env))
    publisher = ProcSpec(
        "publisher",
        "publisher",
        python_module(module, "publish", str(spec.messages), f"{spec.rate:g}"),
        env,
    )
    sink_queue = SINK_QUEUE if stages else "service_a"
    ready = {**{queue: 1 for queue in stages}, sink_queue: 1}
    profile = ("service_b", "sink") if spec.profile else ()
    return Plan(
        spec.label, spec.messages, consumers, publisher, ready, spec.results, vhost, profile
    )


@dataclass
class Plan:
    """One run of a contender: what to start, and what must be consuming before publishing."""

    label: str
    messages: int
    consumers: list[ProcSpec]
    publisher: ProcSpec
    ready: Mapping[str, int]  # queue -> consumers it must have before publishing starts
    results: Path
    vhost: Vhost
    profile: Sequence[str] = ()  # names of consumers to record with py-spy
    hop_log: Path | None = None  # where the processes log their steps (`bench.hop_probe`)


@dataclass
class RunResult:
    contender: str
    messages: int
    status: str = "ok"
    completed: int = 0
    duplicates: int = 0
    rate: float = math.nan  # completed / (last completed_at - first created_at)
    publish_rate: float = math.nan  # messages / (last created_at - first created_at)
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    cpu_s: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    rss_kib: dict[str, int] = field(default_factory=dict)  # role -> largest peak of a process
    processes: int = 0
    broker_cpu_s: float | None = None
    hops: dict[str, tuple[float, float]] = field(default_factory=dict)  # hop -> p50, p99 ms
    # Under the probe: for the process each hop ends in, each step's p50 and p99 in ms
    steps: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    load: float = math.nan  # the machine's 1-minute load average when publishing started
    wall_s: float = 0.0
    profiles: dict[str, Path] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.messages - self.completed

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_s.values())

    def cpu_per_1k(self) -> float:
        return self.cpu_total / self.completed * 1000 if self.completed else math.nan

    def broker_cpu_per_1k(self) -> float:
        if self.broker_cpu_s is None or not self.completed:
            return math.nan
        return self.broker_cpu_s / self.completed * 1000

    def to_json(self) -> dict[str, object]:
        return {
            "contender": self.contender,
            "messages": self.messages,
            "status": self.status,
            "completed": self.completed,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "rate": self.rate,
            "publish_rate": self.publish_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "cpu_s": self.cpu_s,
            "cpu_per_1k": self.cpu_per_1k(),
            "broker_cpu_per_1k": self.broker_cpu_per_1k(),
            "rss_kib": self.rss_kib,
            "processes": self.processes,
            "wall_s": self.wall_s,
            "hops": self.hops,
            "steps": self.steps,
            "load": self.load,
        }


@dataclass(frozen=True)
class Limits:
    ready: float = 90.0  # seconds for the consumers to start consuming
    stall: float = 30.0  # seconds without a completion before a run counts as stalled
    run: float = 300.0  # seconds for the whole run, publishing to the last completion


def _wait_ready(plan: Plan, procs: list[Metered], limits: Limits) -> str | None:
    """None once every queue of `plan.ready` has its consumers, or why not."""
    deadline = time.monotonic() + limits.ready
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                return f"{proc.spec.name} exited ({proc.exit_code}) at start: {proc.tail(3)}"
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            counts = plan.vhost.consumers(list(plan.ready))
            if all(counts.get(q, 0) >= n for q, n in plan.ready.items()):
                return None
        time.sleep(0.2)
    return f"consumers not ready after {limits.ready:g}s ({counts})"


def _start_profilers(plan: Plan, procs: list[Metered], logdir: Path) -> dict[str, Metered]:
    profilers: dict[str, Metered] = {}
    py_spy = Path(PYTHON).parent / "py-spy"
    for proc in procs:
        if proc.spec.name not in plan.profile:
            continue
        output = logdir / f"{proc.spec.name}.pyspy.txt"
        argv = [str(py_spy), "record", "--pid", str(proc.pid), "--format", "raw"]
        argv += ["--rate", "200", "--nonblocking", "--gil", "--output", str(output)]
        spec = ProcSpec(f"py-spy-{proc.spec.name}", "profiler", argv)
        profilers[proc.spec.name] = Metered(spec, logdir)
    return profilers


def run_plan(
    plan: Plan, logdir: Path, limits: Limits, log: Callable[[str], None] = print
) -> RunResult:
    """Run the plan in its vhost; always stops its processes and deletes the vhost."""
    logdir.mkdir(parents=True, exist_ok=True)
    result = RunResult(plan.label, plan.messages)
    started = time.monotonic()
    procs: list[Metered] = []
    profilers: dict[str, Metered] = {}
    try:
        procs = [Metered(spec, logdir) for spec in plan.consumers]
        with Sampler(procs):
            problem = _wait_ready(plan, procs, limits)
            if problem:
                result.status = f"failed: {problem}"
                return result
            profilers = _start_profilers(plan, procs, logdir)
            if profilers:
                time.sleep(1.0)  # py-spy attaches
            for proc in procs:
                proc.mark_baseline()
            beams = broker_pids(plan.vhost.node_urls)
            beam_before = broker_cpu(beams)
            result.load = os.getloadavg()[0]
            publisher = Metered(plan.publisher, logdir)
            procs.append(publisher)
            result.status = _follow(plan, procs, publisher, limits)
            publisher.wait(10)
            for proc in procs:
                proc.poll()
                proc.sample()
            beam_after = broker_cpu(beams)
            if (
                beam_before is not None
                and beam_after is not None
                and broker_pids(plan.vhost.node_urls) == beams
            ):
                result.broker_cpu_s = beam_after - beam_before
            elif beam_before is not None:
                result.status += " (the broker restarted during the run)"
        _measure(result, plan, procs)
        for name, profiler in profilers.items():
            profiler.interrupt()
            profiler.wait(30)
            result.profiles[name] = logdir / f"{name}.pyspy.txt"
        return result
    except Exception as error:  # keep the row, with the reason
        result.status = f"failed: {type(error).__name__}: {error}"
        return result
    finally:
        for proc in [*profilers.values(), *procs]:
            proc.kill()
        plan.vhost.delete()
        result.wall_s = time.monotonic() - started
        log(f"  {plan.label}: {describe_result(result)}")


def _follow(plan: Plan, procs: list[Metered], publisher: Metered, limits: Limits) -> str:
    """Wait for every message to complete; the run's status."""
    completions = Completions(plan.results)
    deadline = time.monotonic() + limits.run
    last_progress, done = time.monotonic(), 0
    while True:
        publisher.sample()  # often: it may exit early, and its peak RSS goes with it
        count = completions.poll()
        now = time.monotonic()
        if count >= plan.messages:
            return "ok"
        if count > done:
            done, last_progress = count, now
        for proc in procs:
            code = proc.poll()
            if code not in (None, 0):
                return f"failed: {proc.spec.name} exited {code}: {proc.tail(3)}"
        if now - last_progress > limits.stall:
            return f"stalled: no completion for {limits.stall:g}s ({count}/{plan.messages})"
        if now > deadline:
            return f"deadline: {limits.run:g}s passed ({count}/{plan.messages})"
        time.sleep(0.1)


def _measure(result: RunResult, plan: Plan, procs: list[Metered]) -> None:
    completions = Completions(plan.results)
    completions.poll()
    result.completed = len(completions.completed)
    result.duplicates = completions.duplicates
    if completions.completed:
        first_created = min(completions.created.values())
        last_created = max(completions.created.values())
        last_completed = max(completions.completed.values())
        if last_completed > first_created:
            result.rate = result.completed / (last_completed - first_created)
        if last_created > first_created:
            result.publish_rate = result.completed / (last_created - first_created)
        latencies = completions.latencies()
        result.p50_ms = percentile(latencies, 0.5) * 1000
        result.p99_ms = percentile(latencies, 0.99) * 1000
        result.hops = completions.hops()
    if plan.hop_log is not None:
        result.steps = hop_steps(plan.hop_log)
    for proc in procs:
        role = proc.spec.role
        result.cpu_s[role] = result.cpu_s.get(role, 0.0) + proc.cpu_seconds()
        result.rss_kib[role] = max(result.rss_kib.get(role, 0), proc.peak_rss_kib())
        result.processes += proc.processes()


def describe_result(result: RunResult) -> str:
    if result.completed == 0:
        return f"{result.status} ({result.wall_s:.0f}s)"
    return (
        f"{result.status}: {result.completed}/{result.messages} in {result.wall_s:.0f}s, "
        f"{result.rate:,.0f} msg/s, p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms, "
        f"CPU {result.cpu_per_1k():.2f} s/1k"
    )
