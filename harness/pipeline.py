"""Running the pipeline as separate processes under a fault, and checking that nothing was lost.

A scenario starts a `PipelineRun`, does its damage, then calls `finish()`, which waits until
every sequence number has been logged by a `last` process, checks the promises (each message
completed, each with history [seq, a, b, c], no queue left holding anything, no process crashed
unless the test killed it) and returns the figures for docs/reliability.md. With `store` set,
every `last` writes to that store, and the store, not the logs, says what completed; the logs
must then hold no id `completed` twice, and none the store does not hold. When the
environment variable RELIABILITY_REPORT names a file, each scenario appends its row there as a
JSON line (`make reliability` renders them).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from common.settings import BrokerSettings, Env
from common.topology import STAGES, every_input
from harness.access import AccessVhost
from harness.broker import Vhost
from harness.delivery_probe import RECORD as REDELIVERY
from harness.deployment import BROKER
from harness.processes import Proc, wait_for, wait_for_each
from harness.store import StoreKeys

PROBE = "harness.delivery_probe"


@dataclass
class Row:
    scenario: str
    messages: int
    lost: int
    duplicates_delivered: int
    duplicates_logged: int
    dead_lettered: int
    seconds: float
    notes: str = ""


@dataclass
class PipelineRun:
    """first → service_a/b/c → last in one vhost; `start` is the conftest fixture."""

    start: Callable[..., Proc]
    vhost: Vhost
    count: int
    env: dict[str, object] = field(default_factory=dict)
    poison: set[int] = field(default_factory=set)  # seqs that never complete
    dead_bodies: Counter[bytes] = field(default_factory=Counter)  # expected dead letters
    services: dict[str, list[Proc]] = field(default_factory=dict)
    lasts: list[Proc] = field(default_factory=list)
    firsts: list[Proc] = field(default_factory=list)
    killed: set[Proc] = field(default_factory=set)
    store: StoreKeys | None = None  # last's durable store; None: each last keeps ids in memory
    started_at: float = field(default_factory=time.monotonic)
    # Run the consumers under `harness.delivery_probe`, which logs each redelivery's count.
    probe: bool = False
    # A user per role (`harness.access`): each process logs in as its own, as in compose.
    logins: AccessVhost | None = None

    def launch(self, name: str, given: Mapping[str, object] | None = None, **env: object) -> Proc:
        """Start the process `name` of `harness.deployment.BROKER` (first, service_a, ..., last):
        its wiring, then what this run gives it (`given`), the run's `env`, and this call's."""
        process = BROKER[name]
        module, probed = process.module, {}
        if self.probe and process.role != "publisher":
            module, probed = PROBE, {"PROBED_MODULE": process.module}
        login = self.logins.env_of(name) if self.logins else {}
        own = {**process.env, **probed, **login, **(given or {})}
        return self.start(module, name, **{**own, **self.env, **env})

    def start_service(self, queue: str, **env: object) -> Proc:
        proc = self.launch(queue, **env)
        self.services.setdefault(queue, []).append(proc)
        return proc

    def start_last(self, **env: object) -> Proc:
        proc = self.launch("last", self.store.env if self.store else None, **env)
        self.lasts.append(proc)
        return proc

    def start_first(self, **env: object) -> Proc:
        proc = self.launch("first", {"NUMBER_OF_MESSAGES": self.count}, **env)
        self.firsts.append(proc)
        return proc

    def start_all(self, replicas: int | None = None, **service_env: object) -> None:
        """last, then each stage's replicas (the description's, unless `replicas`), then first."""
        self.start_last()
        for queue in STAGES:
            for _ in range(replicas or BROKER[queue].replicas):
                self.start_service(queue, **service_env)
        self.start_first()

    def processes(self) -> list[Proc]:
        return [*self.firsts, *(p for ps in self.services.values() for p in ps), *self.lasts]

    def kill(self, proc: Proc, sig: signal.Signals = signal.SIGKILL) -> None:
        self.killed.add(proc)
        proc.signal(sig)

    def logged(self) -> list[dict]:
        """The `completed` records in the logs of every `last`."""
        return [r for proc in self.lasts for r in proc.messages("completed")]

    def completed(self) -> list[dict]:
        """The completed records: the store's, or without one, the logs'."""
        return list(self.store.records().values()) if self.store else self.logged()

    def distinct_completed(self) -> int:
        return len({r["broker_message_id"] for r in self.completed()})

    def wait_until_completed(self, fraction: float, timeout: float) -> None:
        """Wait until `fraction` of the messages have been logged by `last` (mid-run faults)."""
        target = int(self.count * fraction)
        wait_for(lambda: self.distinct_completed() >= target, timeout, f"{target} completions")

    def wait_for_consumers(self, timeout: float = 30) -> None:
        """Wait until every consumer this run started, and did not kill, consumes."""
        consumers = [p for p in self.processes() if p not in self.firsts and p not in self.killed]
        wait_for_each(
            consumers, lambda p: p.messages("consuming"), timeout, "every consumer to be consuming"
        )

    def most_deliveries(self) -> dict[str, int]:
        """Per queue, the most deliveries one message took (probed runs): 1 + its returns."""
        most: dict[str, int] = {}
        for proc in self.processes():
            for record in proc.messages(REDELIVERY):
                queue = record["queue"]
                most[queue] = max(most.get(queue, 1), record["delivery_count"] + 1)
        return most

    def queues(self) -> list[str]:
        """The pipeline's queues as the processes declare them (partitions, in keyed mode)."""
        settings = BrokerSettings.from_env(Env({k: str(v) for k, v in self.env.items()}))
        return list(every_input(settings))

    def expected_seqs(self) -> set[str]:
        return {f"seq-{n}" for n in range(1, self.count + 1) if n not in self.poison}

    def finish(self, scenario: str, timeout: float = 180, notes: str = "") -> Row:
        expected = len(self.expected_seqs())
        try:
            wait_for(
                lambda: self.distinct_completed() >= expected,
                timeout,
                f"all {expected} messages to complete",
                interval=1,
            )
        except AssertionError as error:
            raise AssertionError(f"{error} ({self.distinct_completed()} did)") from None
        for first in self.firsts:
            if first not in self.killed:
                assert first.wait(60) == 0, first.tail()
        wait_for(
            lambda: all(self.vhost.depth(queue) == 0 for queue in self.queues()),
            30,
            "every pipeline queue to be empty",
            interval=0.5,
        )
        seconds = time.monotonic() - self.started_at
        self.check_no_crash()
        self.stop_all()
        row = self.check_completed(scenario, seconds)
        dead = self.vhost.drain("dead_letter")
        assert Counter(body for _, body in dead) == self.dead_bodies
        assert all(properties.headers["x-error-reason"] for properties, _ in dead)
        row.dead_lettered = len(dead)
        row.notes = "; ".join(note for note in (notes, self.unlogged_note()) if note)
        report(row)
        return row

    def check_no_crash(self) -> None:
        for proc in self.processes():
            if proc not in self.killed and proc not in self.firsts:
                assert proc.running, f"{proc.name} exited:\n{proc.tail()}"

    def stop_all(self) -> None:
        """SIGTERM every running consumer: each must drain and exit 0."""
        running = [p for p in self.processes() if p.running]
        for proc in running:
            proc.signal(signal.SIGTERM)
        for proc in running:
            assert proc.wait(30) == 0, proc.tail()
            assert "Traceback" not in proc.stderr(), proc.stderr()

    def check_completed(self, scenario: str, seconds: float) -> Row:
        completed = self.completed()
        by_id = Counter(r["broker_message_id"] for r in completed)
        seqs = {r["history"][0] for r in completed}
        assert seqs == self.expected_seqs()
        assert len(by_id) == len(seqs), "some seq completed under two ids"
        for record in completed:
            assert tuple(record["history"][1:]) == STAGES, record
        logged = Counter(r["broker_message_id"] for r in self.logged())
        assert set(logged) <= set(by_id), "a `completed` line for an id the store does not hold"
        logged_twice = sum(n - 1 for n in logged.values())
        duplicates = sum(len(p.messages("duplicate")) for p in self.lasts)
        return Row(
            scenario=scenario,
            messages=self.count,
            lost=len(self.expected_seqs() - seqs),
            duplicates_delivered=duplicates + logged_twice,
            duplicates_logged=logged_twice,
            dead_lettered=0,
            seconds=round(seconds, 1),
        )

    def unlogged_note(self) -> str:
        """Records the store holds with no `completed` line: their `last` was killed after the
        write and before the line (never the other way round)."""
        if self.store is None:
            return ""
        unlogged = self.distinct_completed() - len({r["broker_message_id"] for r in self.logged()})
        if not unlogged:
            return ""
        return f"{unlogged} stored whose `completed` line died with a killed `last`"


def report(row: Row) -> None:
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(asdict(row)) + "\n")
