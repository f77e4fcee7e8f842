"""docs/http-vs-broker.md and its figure, from the observations of one `python -m compare`.

Everything in the document is generated, the findings included, so that its words always match
its figures: re-run `make compare` rather than edit it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: draw to files, never to a display

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench import report as bench_report
from bench.contenders import version
from harness.accounting import per_second
from harness.comparison import BROKER_PREFETCH, SPIKE_FACTOR, Observation, Timing
from http_pipeline import server
from http_pipeline.client import BACKOFF_FIRST, BACKOFF_MAX

PACKAGES = ("pika", "gunicorn", "urllib3")
TITLES = {"broker": "broker pipeline (RabbitMQ)", "http": "HTTP pipeline (gunicorn + urllib3)"}
COLOURS = {"completed": "#2ca02c", "failed": "#d62728", "fault": "#ffbf00"}


def machine() -> dict[str, str]:
    info = bench_report.machine()
    info["packages"] = ", ".join(f"{p} {version(p)}" for p in PACKAGES if version(p))
    return info


def seconds(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "never"
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def one_line(seen: Observation) -> str:
    a = seen.account
    return (
        f"offered {a.offered}, accepted {a.accepted}, completed {a.completed}, lost {a.lost}, "
        f"failed {a.failed}, duplicates {a.duplicates}, p50 {seconds(a.p50)} s, "
        f"p99 {seconds(a.p99)} s, recovery {seconds(a.recovery, 1)} s"
        + (f"; died unprompted: {seen.crashed}" if seen.crashed else "")
    )


def table(observations: Sequence[Observation]) -> list[str]:
    lines = [
        "| scenario | pipeline | offered | accepted | completed | lost | failed at the caller "
        "| duplicates | p50 (s) | p99 (s) | recovery (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seen in observations:
        a = seen.account
        failed = str(a.failed)
        if a.completed_after_failure:
            failed += f" (+{a.completed_after_failure} that completed all the same)"
        recovery = "-" if seen.window is None else seconds(a.recovery, 1)
        lines.append(
            f"| {seen.scenario.name} | {seen.pipeline} | {a.offered} | {a.accepted} | "
            f"{a.completed} | {a.lost} | {failed} | {a.duplicates} | {seconds(a.p50)} | "
            f"{seconds(a.p99)} | {recovery} |"
        )
    return lines


def throughput(seen: Observation) -> float:
    """Completions per second from the first completion to the last."""
    done = seen.completed_at
    return (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0


def findings(observations: Sequence[Observation], timing: Timing, broker_version: str) -> list[str]:
    by = {(seen.scenario.name, seen.pipeline): seen for seen in observations}
    names = list(dict.fromkeys(seen.scenario.name for seen in observations))
    broker = [by[name, "broker"].account for name in names if (name, "broker") in by]
    http = [by[name, "http"].account for name in names if (name, "http") in by]
    lines = []
    if broker:
        offered = sum(a.offered for a in broker)
        if all(a.completed == a.offered and a.failed == a.lost == 0 for a in broker):
            lines.append(
                f"- **The broker pipeline lost nothing and refused nothing**: in every scenario "
                f"it accepted every message offered and completed it, {offered:,} in all."
            )
        else:
            lost, failed = sum(a.lost for a in broker), sum(a.failed for a in broker)
            lines.append(
                f"- **The broker pipeline did not deliver everything**: {lost} lost and "
                f"{failed} failed at the caller out of {offered:,}; see the table."
            )
    if http:
        lost, failed = sum(a.lost for a in http), sum(a.failed for a in http)
        offered = sum(a.offered for a in http)
        lines.append(
            f"- **The HTTP pipeline lost {lost} of {offered:,} messages silently, and failed "
            f"{failed:,} at the caller.** A stage answers only after the next one did, so a "
            "caller is never told yes about a message that has not reached `last`; what it "
            "cannot deliver comes back to `first` as an error, which then holds the message "
            "and must decide what to do with it (try again later: keep a queue of its own)."
        )
    for name in names:
        if (name, "broker") in by and (name, "http") in by:
            lines.append(compare_scenario(by[name, "broker"], by[name, "http"], timing))
    if ("steady", "http") in by and ("steady", "broker") in by:
        lines += wins(by["steady", "broker"], by["steady", "http"], timing, by, broker_version)
    return lines


def compare_scenario(broker: Observation, http: Observation, timing: Timing) -> str:
    b, h = broker.account, http.account
    name = broker.scenario.name
    both = (
        f"HTTP completed {h.completed} of {h.offered} (p99 {seconds(h.p99)} s), "
        f"{h.failed} failed at the caller; the broker pipeline completed {b.completed} "
        f"(p99 {seconds(b.p99)} s)"
    )
    if name == "steady":
        return f"- **Steady load**: {both}. Well inside capacity, both deliver everything."
    if name == "spike":
        return (
            f"- **Spike** ({SPIKE_FACTOR}x a stage's capacity for {timing.spike_seconds:g} s): "
            f"{both}, the last of them {seconds(b.recovery, 0)} s after the spike ended: the "
            f"queue took the whole spike at once and the stages worked it off at their pace. "
            f"Over HTTP the calls waited in service_a's connection queue until their deadline "
            f"({timing.http_timeout:g} s) passed. From the first completion to the last, HTTP "
            f"completed {throughput(http):.1f} messages/s, the broker pipeline "
            f"{throughput(broker):.1f}."
        )
    if name == "outage":
        return (
            f"- **Outage** (service_c stopped for {timing.outage_seconds:g} s): {both}. The "
            f"messages held up by the outage had all completed {seconds(h.recovery, 1)} s "
            f"(HTTP) and {seconds(b.recovery, 1)} s (broker) after service_c was back: the "
            f"broker's stage takes {timing.capacity:g} messages/s from its queue, the HTTP chain "
            f"about a third of that. Over HTTP every thread "
            f"of service_b and service_a waited for service_c, retrying, and the calls behind "
            f"them waited in the servers' queues: with a deadline of {timing.http_timeout:g} s, "
            f"longer than the outage, "
            + (
                "they rode it out."
                if h.failed == 0
                else f"{h.failed} of them still ran out of time."
            )
            + " A deadline shorter than the outage fails every message that meets it."
        )
    return (
        f"- **Crash** (service_b SIGKILLed and restarted): {both}; the last message that was "
        f"on its way when service_b died completed {seconds(h.recovery, 1)} s (HTTP) and "
        f"{seconds(b.recovery, 1)} s (broker) after it was back. Duplicates recorded by "
        f"`last`: HTTP {h.duplicates}, broker {b.duplicates}. The broker redelivers what the "
        f"dead process held unacknowledged (up to PREFETCH={BROKER_PREFETCH}), and any of it "
        "already passed on reaches `last` twice, which records it as a `duplicate`; over HTTP "
        "the callers repeat their calls with the same idempotency key, and a stage that passed "
        "the message on before stops the repeat."
    )


def wins(
    broker: Observation,
    http: Observation,
    timing: Timing,
    by: dict[tuple[str, str], Observation],
    broker_version: str,
) -> list[str]:
    work = 3 * timing.work  # three stages, each a fixed work time
    added_http = (http.account.p50 - work) * 1000
    added_broker = (broker.account.p50 - work) * 1000
    chain = timing.workers / work
    latency = (
        f"At the steady load each message spends {work:g} s in the three stages' work; on top "
        f"of that the HTTP pipeline added {added_http:.0f} ms at the p50 (p50 "
        f"{seconds(http.account.p50, 3)} s), the broker pipeline {added_broker:.0f} ms (p50 "
        f"{seconds(broker.account.p50, 3)} s)"
    )
    http_faster = added_http < added_broker
    lines = [] if http_faster else ["", f"Latency at low load: {latency}: no win for HTTP here."]
    lines += ["", "Where HTTP wins:", ""]
    if http_faster:
        lines.append(
            f"- **Latency at low load.** {latency}: a direct call skips the publish, the "
            "confirm and the delivery of every hop."
        )
    lines += [
        "- **One less server to run.** The HTTP pipeline is five processes and nothing else; "
        f"the broker pipeline also needs RabbitMQ (here {broker_version}), its disk, memory, "
        "upgrades and monitoring.",
    ]
    crash_http, crash_broker = by.get(("crash", "http")), by.get(("crash", "broker"))
    if (
        crash_http
        and crash_broker
        and crash_http.account.duplicates < crash_broker.account.duplicates
    ):
        lines.append(
            "- **No duplicates from a crash**, as above: each stage remembers the message ids "
            "it passed on, where a broker consumer redelivers and leaves de-duplication to "
            "`last`."
        )
    lines += [
        "",
        "What it costs:",
        "",
        f"- **Capacity.** A thread of service_a is busy until service_b, service_c and `last` "
        f"have answered, so with {timing.workers} threads per stage the HTTP chain moves at "
        f"most {timing.workers} / {work:g} s = {chain:.1f} messages/s, a third of the "
        f"{timing.capacity:g} messages/s a broker stage works through: to match it, service_a "
        f"needs three times the threads and service_b twice.",
        "- **Overload becomes errors.** Every message the chain could not finish before its "
        "deadline is an error at the caller, after the caller has waited the whole deadline "
        "for it; a queue turns the same overload into waiting.",
    ]
    return lines


def render(
    observations: Sequence[Observation],
    timing: Timing,
    machine_info: dict[str, str],
    command: str,
    plot: Path | None,
) -> str:
    scenarios = list(dict.fromkeys(seen.scenario for seen in observations))
    lines = [
        "# HTTP between services, side by side with the broker",
        "",
        "<!-- Generated by `make compare` (python -m compare); re-run it rather than edit. -->",
        "",
        "The seed's claim is that a broker between services \"adds a message buffer and "
        'message preservation during times of increased load" where HTTP calls between them '
        "would not. Here both run the same stages through the same load and faults, one after "
        "the other on one machine, and every message is accounted for: completed, failed at "
        "the caller (the publisher was told), or lost (neither).",
        "",
        "## How it was run",
        "",
        f"```sh\nmake compare    # {command}\n```",
        "",
        *(f"- {key}: {value}" for key, value in machine_info.items()),
        "",
        "The machine is shared: other people's tests use the same two cores and broker at the "
        "same time, so latencies move by some milliseconds between runs; the counts do not.",
        "",
        "## The two pipelines",
        "",
        f"- **Both**: the same stage code (`service.work.Stage`), {timing.work:g} s of work per "
        f"message in each of service_a, service_b and service_c, {timing.workers} worker "
        f"threads per stage, so a stage works through {timing.capacity:g} messages/s; the "
        "same `first` messages and the same `last` records (`python -m tools.report` reads "
        "either).",
        "- **Broker**: this project: quorum queues, persistent messages, publisher confirms on "
        f"every hop, an ack only after the next hop's confirm, PREFETCH={BROKER_PREFETCH}.",
        "- **HTTP** (`http_pipeline/`): each stage a gunicorn server (one process, "
        f"{timing.workers} gthread threads, backlog {server.BACKLOG}, "
        f"{server.WORKER_CONNECTIONS} connections) that does its work, then calls the next "
        "stage and answers its caller once that one answered. `first` gives each message a "
        f"deadline of {timing.http_timeout:g} s (HTTP_TIMEOUT), carried through every hop; a "
        "call is retried on a refused or broken connection and on 409 (in progress) with "
        f"full-jitter back-off ({BACKOFF_FIRST * 1000:g} ms doubling to {BACKOFF_MAX:g} s) "
        "until the deadline; 4xx and 5xx answers are final (retries at one layer only); every "
        "stage keeps the message ids it passed on (the idempotency key) and does not work on "
        "a repeat, nor on a message whose deadline has passed.",
        "",
        "## Scenarios",
        "",
        *(f"- **{s.name}**: {s.title}." for s in scenarios),
        "",
        "## Results",
        "",
        *table(observations),
        "",
        "- **accepted**: the first hop said yes: the broker confirmed the publish, or "
        "service_a answered 200 (which, in a synchronous chain, means `last` has it).",
        "- **lost**: offered, never completed, and the caller was never told it failed.",
        "- **failed at the caller**: `first` was told it failed (HTTP: an error answer or "
        "no answer before the deadline; broker: a nack or no confirm).",
        "- **duplicates**: records `last` wrote for a message it had recorded before.",
        "- **p50 / p99**: `completed_at - created_at` of the completed messages.",
        "- **recovery**: from the end of the fault (the spike's last second; the stage ready "
        "again) until every message accepted by then had completed: the time to work off "
        "the fault's backlog; never, if an accepted message never completed.",
        "",
    ]
    if plot is not None:
        lines += [
            f"![Completions and failures per second, broker pipeline left, HTTP right, one row "
            f"per scenario, each fault's window shaded]({os.path.relpath(plot, Path('docs'))})",
            "",
            "Completions per second (green) and failures reported to `first` per second (red), "
            "from the start of `first`; the fault's window is shaded.",
            "",
        ]
    broker_version = machine_info.get("broker", "unknown")
    lines += ["## What it shows", "", *findings(observations, timing, broker_version)]
    return "\n".join(lines).rstrip() + "\n"


def draw(observations: Sequence[Observation], path: Path) -> None:
    names = list(dict.fromkeys(seen.scenario.name for seen in observations))
    pipelines = list(dict.fromkeys(seen.pipeline for seen in observations))
    figure, axes = plt.subplots(
        len(names), len(pipelines), figsize=(6 * len(pipelines), 2.6 * len(names)), squeeze=False
    )
    for seen in observations:
        row, column = names.index(seen.scenario.name), pipelines.index(seen.pipeline)
        ax = axes[row][column]
        ends = [*seen.completed_at, *seen.failed_at, seen.started + seen.scenario.seconds]
        span = math.ceil(max(ends) - seen.started) + 1
        x = range(span)
        ax.step(x, per_second(seen.completed_at, seen.started, span), where="post",
                color=COLOURS["completed"])  # fmt: skip
        ax.step(x, per_second(seen.failed_at, seen.started, span), where="post",
                color=COLOURS["failed"])  # fmt: skip
        if seen.window is not None:
            begin, end = (moment - seen.started for moment in seen.window)
            ax.axvspan(begin, end, color=COLOURS["fault"], alpha=0.3)
        ax.set_title(
            f"{seen.scenario.name}: {TITLES.get(seen.pipeline, seen.pipeline)}", fontsize=9
        )
        ax.set_xlabel("seconds since first started", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for row in axes:  # the same scale for both pipelines of a scenario
        top = max(ax.get_ylim()[1] for ax in row)
        right = max(ax.get_xlim()[1] for ax in row)
        for ax in row:
            ax.set_ylim(0, top)
            ax.set_xlim(0, right)
    handles = [
        Line2D([], [], color=COLOURS["completed"], label="completed / s"),
        Line2D([], [], color=COLOURS["failed"], label="failed at the caller / s"),
        Patch(color=COLOURS["fault"], alpha=0.3, label="fault"),
    ]
    figure.legend(handles=handles, loc="upper center", ncol=3, fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)
