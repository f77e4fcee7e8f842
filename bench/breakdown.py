"""Where a hop's time goes: this project's steps, measured, beside bare pika hops at the same load.

At two loads, a low one (LOW_RATE msg/s, where a quorum queue's fsync sets the floor) and a
third of this project's maximum (the steady runs' rate):

- this project's processes under `bench.hop_probe`, whose steps (`bench.hop_steps`) split each
  hop into the broker's part (from the wire of one process to the next one's hands) and each
  process's own: to a worker thread, the handler, back to the I/O thread, into pika, onto the
  wire;
- bare pika hops at the same rate (`bench.ceiling`), on quorum and on classic queues: one hop
  alone, and four side by side, which is the load the pipeline puts on the broker at that rate
  (four queues, each with its publishes, deliveries, acks and confirms).

One run each: the medians of the steps over thousands of messages are steady; their p99 moves
with whatever else the machine does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

from bench import ceiling
from bench.contenders import CONTENDERS
from bench.hop_steps import PROCESSES, STEPS
from bench.runs import RunResult
from bench.session import Session

LOW_RATE = 10.0  # msg/s
LOW_SECONDS = 20.0
BARE = (  # (label, queues, queue type)
    ("1 hop alone, quorum", 1, "quorum"),
    ("1 hop alone, classic", 1, "classic"),
    ("4 hops side by side, quorum (the pipeline's load)", 4, "quorum"),
    ("4 hops side by side, classic", 4, "classic"),
)


@dataclass(frozen=True)
class Load:
    name: str
    rate: float
    project: RunResult
    bare: dict[str, RunResult]  # BARE's label -> its run

    def bare_run(self, queues: int, queue_type: str) -> RunResult | None:
        """The bare hops' run of `queues` side by side on `queue_type`, if it ran to the end."""
        for label, count, kind in BARE:
            result = self.bare.get(label)
            if (count, kind) == (queues, queue_type) and result and result.status == "ok":
                return result
        return None


def run_breakdown(session: Session, steady_rate: float, steady_seconds: float) -> list[Load]:
    """The probe's run and the bare hops', at the low load and at `steady_rate`."""
    loads = []
    for name, rate, seconds in (
        (f"low load: {LOW_RATE:g} msg/s", LOW_RATE, LOW_SECONDS),
        (f"a third of the maximum: {steady_rate:,.0f} msg/s", steady_rate, steady_seconds),
    ):
        messages = max(100, round(rate * seconds))
        tag = f"breakdown-{rate:g}"
        project = session.run(
            CONTENDERS["project"], f"{tag}-project", messages=messages, rate=rate, probe=True
        )
        bare = {}
        for label, queues, queue_type in BARE:
            contender = replace(
                CONTENDERS["ceiling"],
                name=f"ceiling-{queues}",
                plan=partial(ceiling.plan, queues=queues),
            )
            bare[label] = session.run(
                contender,
                f"{tag}-bare-{queues}-{queue_type}",
                messages=messages,
                rate=rate,
                queue_type=queue_type,
            )
        loads.append(Load(name, rate, project, bare))
    return loads


def _cell(figures: tuple[float, float] | None) -> str:
    if figures is None or math.isnan(figures[0]):
        return "-"
    return f"{figures[0]:,.2f} / {figures[1]:,.1f}"


def section(loads: list[Load]) -> list[str]:
    if not loads:
        return []
    lines = [
        "## Where a hop's time goes",
        "",
        "This project run under `bench.hop_probe`, which stamps each message at every step in "
        "every process (the product records none of this), at a low load and at a third of "
        "the maximum; beside it, bare pika hops (`bench.ceiling`: a publisher streaming "
        "confirms, a consumer acking each message) at the same rate, alone and four side by "
        "side: the pipeline's four queues put that load on the broker. p50 / p99 in ms.",
        "",
        "- **broker**: from the moment the process before put the message on the wire to the "
        "moment pika hands it to this one: the broker, the loopback, and the time the bytes "
        "wait for this process to read them.",
        "- **to a worker**, **handler**, **back to the I/O thread**, **into pika**, **onto the "
        "wire**: this process's own, from pika's delivery to its output's frames sent "
        "(`last` publishes nothing: its hop ends once its record is kept and its outcome back "
        "on the I/O thread).",
        "",
    ]
    header = "| hop ends in | " + " | ".join(name for name, _, _ in STEPS) + " |"
    for load in loads:
        project = load.project
        lines += [
            f"### At {load.name}",
            "",
            f"This project: {project.status}, end to end p50 {_num(project.p50_ms)} ms, p99 "
            f"{_num(project.p99_ms)} ms.",
            "",
            header,
            "|---|" + "---:|" * len(STEPS),
        ]
        for process in PROCESSES[1:]:
            steps = project.steps.get(process, {})
            cells = " | ".join(_cell(steps.get(name)) for name, _, _ in STEPS)
            lines.append(f"| {process} | {cells} |")
        lines += ["", "| bare pika hop, same rate per queue | p50 | p99 | |", "|---|---:|---:|---|"]
        for label, result in load.bare.items():
            p50, p99 = _num(result.p50_ms, 2), _num(result.p99_ms, 1)
            lines.append(f"| {label} | {p50} | {p99} | {result.status} |")
        lines.append("")
    return lines


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"
