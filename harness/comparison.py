"""Both pipelines through the same scenarios, as local processes: `make compare` and its tests.

A scenario is a load (`first` at a rate, for a time) and a fault: none (steady load), a spike
of ten times a stage's capacity, an outage (a stage stopped with SIGTERM, started again later)
or a crash (a stage SIGKILLed and started again at once). `observe` runs one scenario on one
pipeline from scratch, waits until every message has completed or failed at the caller (or
until the time for that is up: the rest are lost), and accounts for every message
(`harness.accounting`). The broker pipeline runs in a vhost of its own (`PipelineRun`), the HTTP
one on ports of its own (`HttpPipelineRun`).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from common.topology import STAGES
from harness.accounting import Account, account, arrivals, caller_view
from harness.broker import Vhost
from harness.deployment import DEMO_PREFETCH, STAGE_WORKERS, twin
from harness.http_run import HttpPipelineRun
from harness.pipeline import PipelineRun
from harness.processes import Proc, wait_for

SPIKE_FACTOR = 10  # the spike offers this many times a stage's capacity
STOP_TIMEOUT_S = 60  # a stage stopped with SIGTERM finishes what it holds well within this
# As the compose demo's stages: a drain or a crash concerns 20 messages at most.
BROKER_PREFETCH = DEMO_PREFETCH


@dataclass(frozen=True)
class Timing:
    """The sizes of a set of scenarios: full ones for `make compare`, short ones for tests."""

    work: float  # seconds of work per message in every stage (RANDOM_WAIT_MIN = _MAX)
    rate: float  # messages per second of the steady load (all scenarios but the spike)
    seconds: float  # how long the steady load lasts
    spike_seconds: float  # how long the spike lasts
    fault_at: float  # seconds into the load when the outage or crash begins
    outage_seconds: float  # how long the stage is down
    http_timeout: float  # HTTP_TIMEOUT: how long the HTTP `first` waits for a message
    settle: float  # seconds to wait, past what the backlog needs, for the last completions
    workers: int = STAGE_WORKERS  # threads of each stage

    @property
    def capacity(self) -> float:
        """Messages per second one stage works through: its threads over the work time."""
        return self.workers / self.work

    def stage_env(self) -> dict[str, object]:
        return {"WORKERS": self.workers, "RANDOM_WAIT_MIN": self.work, "RANDOM_WAIT_MAX": self.work}


# The two sets side by side. `make compare`: the demo's order of work (1 s a message), so a
# stage takes 10 messages/s and the spike is 100/s for 10 s; a steady 1.5/s is well inside the
# capacity of either pipeline (the HTTP chain's is about 3.3/s: service_a's threads also wait for
# b, c and last). The tests: 100 ms of work (100 messages/s a stage; the spike 1,000/s for half a
# second).
SIZES = {  # Timing's field: (`make compare`, the tests)
    "work": (1.0, 0.1),
    "rate": (1.5, 10),
    "seconds": (60, 3),
    "spike_seconds": (10, 0.5),
    "fault_at": (20, 1),
    "outage_seconds": (20, 1.5),
    "http_timeout": (30, 2),
    "settle": (60, 20),
}
FULL, SHORT = (Timing(**{name: sizes[i] for name, sizes in SIZES.items()}) for i in (0, 1))


@dataclass(frozen=True)
class Scenario:
    name: str  # steady, spike, outage or crash
    title: str
    rate: float  # messages per second `first` offers
    count: int
    stage: str | None = None  # the stage the fault hits
    at: float = 0.0  # seconds after the start when it does
    outage: float = 0.0  # seconds it stays down

    @property
    def seconds(self) -> float:
        return self.count / self.rate


def scenarios(timing: Timing) -> list[Scenario]:
    count = round(timing.rate * timing.seconds)
    steady = f"{timing.rate:g} messages/s for {timing.seconds:g} s"
    spike_rate = SPIKE_FACTOR * timing.capacity
    at = timing.fault_at
    return [
        Scenario("steady", f"steady load: {steady}", timing.rate, count),
        Scenario(
            "spike",
            f"spike: {spike_rate:g} messages/s ({SPIKE_FACTOR}x a stage's capacity) "
            f"for {timing.spike_seconds:g} s",
            spike_rate,
            round(spike_rate * timing.spike_seconds),
        ),
        Scenario(
            "outage",
            f"outage: service_c stopped at {at:g} s for {timing.outage_seconds:g} s; {steady}",
            timing.rate,
            count,
            stage="service_c",
            at=at,
            outage=timing.outage_seconds,
        ),
        Scenario(
            "crash",
            f"crash: service_b SIGKILLed at {at:g} s and restarted; {steady}",
            timing.rate,
            count,
            stage="service_b",
            at=at,
        ),
    ]


class Pipeline(Protocol):
    """What a scenario does to a pipeline; `broker` and `http` below."""

    name: str

    def start_servers(self) -> None: ...  # everything but `first`, ready to take messages

    def start_first(self, rate: float, run_id: str) -> Proc: ...

    def stop(self, stage: str) -> None: ...  # SIGTERM, and wait until it has exited

    def crash(self, stage: str) -> None: ...  # SIGKILL it and whatever it started

    def restart(self, stage: str) -> None: ...  # start it again, ready to take messages

    def last_records(self) -> list[dict]: ...

    def servers(self) -> list[Proc]: ...  # every one started, `first` aside


@dataclass
class BrokerPipeline:
    run: PipelineRun
    timing: Timing
    name: str = "broker"

    def stage_env(self) -> dict[str, object]:
        return {**self.timing.stage_env(), "PREFETCH": BROKER_PREFETCH}

    def start_servers(self) -> None:
        self.run.start_last()
        for stage in STAGES:
            self.run.start_service(stage, **self.stage_env())
        self.run.wait_for_consumers()

    def start_first(self, rate: float, run_id: str) -> Proc:
        return self.run.start_first(PUBLISH_RATE=rate, RUN_ID=run_id)

    def stop(self, stage: str) -> None:
        proc = self.run.services[stage][-1]
        self.run.kill(proc, signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)

    def crash(self, stage: str) -> None:
        proc = self.run.services[stage][-1]
        self.run.killed.add(proc)
        proc.kill()

    def restart(self, stage: str) -> None:
        proc = self.run.start_service(stage, **self.stage_env())
        wait_for(lambda: proc.messages("consuming"), STOP_TIMEOUT_S, f"{stage} to consume")

    def last_records(self) -> list[dict]:
        return [r for proc in self.run.lasts for r in proc.records()]

    def servers(self) -> list[Proc]:
        return [p for p in self.run.processes() if p not in self.run.firsts]


@dataclass
class HttpPipeline:
    run: HttpPipelineRun
    timing: Timing
    name: str = "http"

    def start_servers(self) -> None:
        self.run.start_servers(**self.timing.stage_env())

    def start_first(self, rate: float, run_id: str) -> Proc:
        return self.run.start_first(PUBLISH_RATE=rate, RUN_ID=run_id)

    def stop(self, stage: str) -> None:
        proc = self.run.servers[twin(stage)]
        proc.signal(signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)

    def crash(self, stage: str) -> None:
        self.run.servers[twin(stage)].kill()

    def restart(self, stage: str) -> None:
        self.run.start_stage(stage, **self.timing.stage_env())
        self.run.wait_until_serving()

    def last_records(self) -> list[dict]:
        return [r for proc in self.run.lasts for r in proc.records()]

    def servers(self) -> list[Proc]:
        return [*self.run.stages, *self.run.lasts]


def broker_pipeline(
    start: Callable[..., Proc], vhost: Vhost, scenario: Scenario, timing: Timing
) -> BrokerPipeline:
    return BrokerPipeline(PipelineRun(start, vhost, scenario.count), timing)


def http_pipeline(start: Callable[..., Proc], scenario: Scenario, timing: Timing) -> HttpPipeline:
    env = {"HTTP_TIMEOUT": timing.http_timeout}
    return HttpPipeline(HttpPipelineRun(start, scenario.count, env), timing)


@dataclass
class Observation:
    """One scenario on one pipeline: what happened, and when (epoch seconds)."""

    pipeline: str
    scenario: Scenario
    started: float  # when `first` was started
    window: tuple[float, float] | None  # the fault: the spike, or from stop/kill to ready again
    account: Account
    completed_at: list[float]  # each completed message's (first) completion
    failed_at: list[float]  # each failure reported to `first`
    first_exit: int | None
    crashed: list[str] = field(default_factory=list)  # servers that died without being hit


def pause_until(moment: float) -> None:
    """Wait for a moment in the scenario's script (the fault's schedule, not a condition)."""
    time.sleep(max(0.0, moment - time.time()))


def inflict(pipeline: Pipeline, scenario: Scenario, started: float) -> tuple[float, float] | None:
    if scenario.name == "spike":
        return started, started + scenario.seconds
    if scenario.stage is None:
        return None
    pause_until(started + scenario.at)
    began = time.time()
    if scenario.name == "outage":
        pipeline.stop(scenario.stage)
        pause_until(began + scenario.outage)
    else:
        pipeline.crash(scenario.stage)
    pipeline.restart(scenario.stage)
    return began, time.time()


def observe(pipeline: Pipeline, scenario: Scenario, timing: Timing) -> Observation:
    """Run `scenario` on `pipeline` (which must be new) and account for every message."""
    run_id = f"{pipeline.name}-{scenario.name}-{secrets.token_hex(3)}"
    pipeline.start_servers()
    started = time.time()
    first = pipeline.start_first(scenario.rate, run_id)
    before = pipeline.servers()
    window = inflict(pipeline, scenario, started)
    hit = [proc for proc in before if not proc.running]  # what the fault stopped or killed

    def settled() -> bool:
        failed = caller_view(first.records()).failed
        completed = arrivals(pipeline.last_records(), run_id, scenario.count).completions
        return not first.running and len(failed.keys() | completed.keys()) >= scenario.count

    backlog = scenario.count / timing.capacity  # the broker works through a spike this long
    limit = scenario.seconds + backlog + timing.http_timeout + timing.settle
    with contextlib.suppress(AssertionError):  # what has not settled by then is lost
        wait_for(settled, limit, "every message to complete or fail", interval=0.5)
    caller = caller_view(first.records())
    arrived = arrivals(pipeline.last_records(), run_id, scenario.count)
    crashed = [p.name for p in pipeline.servers() if p not in hit and not p.running]
    return Observation(
        pipeline=pipeline.name,
        scenario=scenario,
        started=started,
        window=window,
        account=account(scenario.count, caller, arrived, window[1] if window else None),
        completed_at=sorted(c.completed_at for c in arrived.completions.values()),
        failed_at=sorted(caller.failed.values()),
        first_exit=first.poll(),
        crashed=crashed,
    )
