"""The benchmark's report: the machine, the tables, the targets, the profile; as markdown.

`write` replaces a file's generated part and keeps whatever follows the KEEP marker, so the
hand-written analysis in docs/benchmarks.md survives a re-run.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika

from bench import breakdown
from bench import profile as pyspy
from bench.contenders import CONTENDERS, version
from bench.runs import RunResult, median
from bench.session import Session
from harness.broker import broker_url
from harness.processes import ROOT

KEEP = "<!-- Everything below this line is hand-written; `python -m bench --write` keeps it. -->"
PACKAGES = (
    "pika",
    "faststream",
    "aio-pika",
    "aiormq",
    "dramatiq",
    "celery",
    "kombu",
    "amqp",
    "psutil",
    "py-spy",
)
TARGET_FASTSTREAM = 6.0
TARGET_SEED = 2.5  # the seed's design publishes without confirms; this project confirms every hop
TARGET_CEILING_SHARE = 0.6
TARGET_P99_MS = 25.0
TARGET_HOP_P50 = 1.5  # a hop's p50 at most this many times a bare pika hop's at the same load
TARGET_CPU_PER_1K = 0.40  # CPU s of every process of the pipeline per 1,000 messages
TARGET_SCALING = 1.8
TARGET_STORE_SHARE = 0.9  # last with its durable store: at most 10% slower than without
TARGET_METRICS_SHARE = 0.95  # metrics on: within 5% of the rate without them


# -- the machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def _broker_version() -> str:
    try:
        parameters = pika.URLParameters(broker_url())
        parameters.socket_timeout = 5
        connection = pika.BlockingConnection(parameters)
    except Exception as error:
        return f"unknown ({type(error).__name__})"
    try:
        properties = connection._impl.server_properties
        product = properties.get("product", b"RabbitMQ")
        release = properties.get("version", b"?")
        platform_ = properties.get("platform", b"")
        decode = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        return f"{decode(product)} {decode(release)} ({decode(platform_)})"
    finally:
        connection.close()


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()

    try:
        head = git("log", "-1", "--format=%h %s")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def machine() -> dict[str, str]:
    try:
        cores = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        cores = str(os.cpu_count())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores (nproc)": cores,
        "CPU": _cpu_model(),
        "RAM": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "broker": _broker_version() + " on 127.0.0.1",
        "load average at start (1, 5, 15 min)": load,
        "code": _git(),
        "packages": ", ".join(f"{p} {version(p)}" for p in PACKAGES if version(p)),
    }


# -- figures -------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _mib(kib: float) -> str:
    return "-" if not kib else f"{kib / 1024:.0f}"


class Figures:
    """The medians of one contender's repeated runs."""

    def __init__(self, results: Sequence[RunResult]) -> None:
        self.results = list(results)
        done = [r for r in self.results if r.completed]
        self.runs = len(self.results)
        self.ok = sum(1 for r in self.results if r.status == "ok")

        def med(pick: Callable[[RunResult], float]) -> float:
            return median([pick(r) for r in done])

        self.rate = med(lambda r: r.rate)
        self.publish_rate = med(lambda r: r.publish_rate)
        self.p50 = med(lambda r: r.p50_ms)
        self.p99 = med(lambda r: r.p99_ms)
        self.cpu = med(lambda r: r.cpu_per_1k())
        self.broker_cpu = med(lambda r: r.broker_cpu_per_1k())
        self.rss = {
            role: med(lambda r, role=role: r.rss_kib.get(role, 0))
            for role in ("publisher", "stage", "sink")
        }
        self.load = med(lambda r: r.load)
        self.processes = max((r.processes for r in done), default=0)
        self.lost = max((r.lost for r in self.results), default=0)
        self.duplicates = max((r.duplicates for r in self.results), default=0)

    @property
    def measured(self) -> bool:
        return any(r.completed for r in self.results)

    def status(self) -> str:
        if self.runs and self.ok == self.runs:
            return "ok" if self.runs == 1 else f"ok x{self.runs}"
        problems = sorted({r.status for r in self.results if r.status != "ok"})
        text = "; ".join(problems)
        return text if self.runs == 1 else f"{self.ok}/{self.runs} ok: {text}"


def _figures(runs: dict[Any, list[RunResult]]) -> dict[Any, Figures]:
    return {key: Figures(results) for key, results in runs.items()}


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main_table(session: Session) -> list[str]:
    figures = _figures(session.main)
    lines = [
        "| contender | msg/s | publish msg/s | p50 ms | p99 ms | CPU s / 1k msgs "
        "| broker CPU s / 1k | peak RSS MiB: publisher / stage / sink | processes "
        "| lost | dup | load | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, fig in figures.items():
        title = CONTENDERS[name].title
        if not fig.measured:
            lines.append(
                f"| {title} | - | - | - | - | - | - | - | - | - | - | - | {_escape(fig.status())} |"
            )
            continue
        rss = " / ".join(_mib(fig.rss[role]) for role in ("publisher", "stage", "sink"))
        lines.append(
            f"| {title} | **{_num(fig.rate)}** | {_num(fig.publish_rate)} | {_num(fig.p50)} "
            f"| {_num(fig.p99)} | {_num(fig.cpu, 2)} | {_num(fig.broker_cpu, 2)} | {rss} "
            f"| {fig.processes} | {fig.lost} | {fig.duplicates} | {_num(fig.load, 1)} "
            f"| {_escape(fig.status())} |"
        )
    return lines


def steady_table(session: Session) -> list[str]:
    lines = [
        "| contender | offered msg/s | achieved msg/s | p50 ms | p99 ms | CPU s / 1k msgs "
        "| lost | load | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    max_rates = {name: fig.rate for name, fig in _figures(session.main).items()}
    for name, fig in _figures(session.steady).items():
        title = CONTENDERS[name].title
        status = fig.status()
        if max_rates.get(name, math.inf) < session.steady_rate:
            status += " (offered load is above its maximum: its queues grow)"
        lines.append(
            f"| {title} | {_num(session.steady_rate)} | {_num(fig.rate)} | {_num(fig.p50, 1)} "
            f"| {_num(fig.p99, 1)} | {_num(fig.cpu, 2)} | {fig.lost} | {_num(fig.load, 1)} "
            f"| {_escape(status)} |"
        )
    return lines


HOPS = (
    ("created_at->service_a", "publisher -> service_a"),
    ("service_a->service_b", "service_a -> service_b"),
    ("service_b->service_c", "service_b -> service_c"),
    ("service_c->completed_at", "service_c -> sink"),
)


def hops_table(runs: dict[str, list[RunResult]]) -> list[str]:
    """p50 / p99 of each hop, from the stages' timestamps in the messages."""
    lines = [
        "| contender | " + " | ".join(title for _, title in HOPS) + " |",
        "|---|" + "---:|" * len(HOPS),
    ]
    for name, results in runs.items():
        done = [r for r in results if r.hops]
        if not done:
            continue
        cells = []
        for hop, _ in HOPS:
            p50 = median([r.hops[hop][0] for r in done if hop in r.hops])
            p99 = median([r.hops[hop][1] for r in done if hop in r.hops])
            cells.append(f"{_num(p50, 1)} / {_num(p99, 1)}")
        lines.append(f"| {CONTENDERS[name].title} | " + " | ".join(cells) + " |")
    return lines


def scaling_table(session: Session) -> list[str]:
    figures = _figures(session.scaling)
    base = figures.get(1)
    lines = [
        "| service_b replicas | msg/s | vs 1 replica | ideal | p50 ms | p99 ms "
        "| CPU s / 1k msgs | lost | load | runs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for replicas, fig in figures.items():
        ratio = fig.rate / base.rate if base and base.rate else math.nan
        lines.append(
            f"| {replicas} | {_num(fig.rate)} | {_num(ratio, 2)}x | {replicas}x "
            f"| {_num(fig.p50)} | {_num(fig.p99)} | {_num(fig.cpu, 2)} | {fig.lost} "
            f"| {_num(fig.load, 1)} | {_escape(fig.status())} |"
        )
    return lines


def _paired(
    left: list[RunResult], right: list[RunResult], value: Callable[[RunResult], float]
) -> list[float]:
    """Per-repeat ratios of `left` to `right` (runs of the same repeat go together)."""
    ratios = []
    for a, b in zip(left, right, strict=False):
        if a.completed and b.completed and value(b) > 0:
            ratios.append(value(a) / value(b))
    return ratios


def _spread(ratios: list[float]) -> str:
    if len(ratios) < 2:
        return ""
    return " (per run: " + ", ".join(f"{r:.2f}" for r in ratios) + ")"


def targets(session: Session) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, ratio to the target, met?) for each of the issue's targets."""
    rows: list[tuple[str, str, str, bool | None]] = []
    main = session.main
    figures = _figures(main)
    project = figures.get("project")
    rate = project.rate if project and project.measured else math.nan

    def versus(name: str, target: str, need: float, scale: float = 1.0) -> None:
        other = figures.get(name)
        if not (other and other.measured and not math.isnan(rate)):
            rows.append((target, "not measured", "-", None))
            return
        ratio = rate / (other.rate * scale)
        per_run = _paired(main["project"], main[name], lambda r: r.rate)
        per_run = [r / scale for r in per_run]
        measured = f"{rate:,.0f} vs {other.rate * scale:,.0f} msg/s"
        rows.append(
            (target, measured, f"{ratio:.2f} (need {need:g}){_spread(per_run)}", ratio >= need)
        )

    versus(
        "faststream", f"end-to-end rate >= {TARGET_FASTSTREAM:g}x FastStream's", TARGET_FASTSTREAM
    )
    versus(
        "seed",
        f"end-to-end rate >= {TARGET_SEED:g}x the seed design's (with confirms on)",
        TARGET_SEED,
    )
    versus("ceiling", "end-to-end rate >= 60% of the broker ceiling / 4", 0.6, 0.25)
    if project and project.measured:
        per_run = [r.cpu_per_1k() for r in main["project"] if r.completed]
        rows.append(
            (
                f"CPU per 1,000 messages (all the pipeline's processes) <= {TARGET_CPU_PER_1K:g} s",
                f"{project.cpu:.2f} s (per run {', '.join(f'{c:.2f}' for c in per_run)})",
                f"{project.cpu / TARGET_CPU_PER_1K:.2f} of the limit",
                project.cpu <= TARGET_CPU_PER_1K,
            )
        )
    rows.append(hop_target(session))

    rows.append(
        share_target(main, figures, "project-store", "with last's store", TARGET_STORE_SHARE)
    )
    rows.append(share_target(main, figures, "project-metrics", "metrics on", TARGET_METRICS_SHARE))

    steady_figures = _figures(session.steady)
    steady = steady_figures.get("project")
    if steady and steady.measured:
        floor = steady_figures.get("ceiling")
        reference = ""
        if floor and floor.measured:
            reference = f"; one bare hop at the same load: p99 {floor.p99:,.1f} ms"
        rows.append(
            (
                f"p99 latency < {TARGET_P99_MS:g} ms at 1/3 of max load "
                f"({session.steady_rate:,.0f} msg/s)",
                f"p99 {steady.p99:,.1f} ms (p50 {steady.p50:,.1f} ms{reference})",
                f"{steady.p99 / TARGET_P99_MS:.2f} of the limit",
                steady.p99 < TARGET_P99_MS,
            )
        )
    else:
        rows.append(("p99 latency < 50 ms at 1/3 of max load", "not measured", "-", None))

    scaling = _figures(session.scaling)
    one, two = scaling.get(1), scaling.get(2)
    if one and two and one.measured and two.measured:
        ratio = two.rate / one.rate
        per_run = _paired(session.scaling[2], session.scaling[1], lambda r: r.rate)
        rows.append(
            (
                "2 replicas of the slow stage >= 1.8x the rate of 1",
                f"{two.rate:,.0f} vs {one.rate:,.0f} msg/s",
                f"{ratio:.2f} (need {TARGET_SCALING:g}){_spread(per_run)}",
                ratio >= TARGET_SCALING,
            )
        )
    else:
        rows.append(
            ("2 replicas of the slow stage >= 1.8x the rate of 1", "not measured", "-", None)
        )
    return rows


def hop_target(session: Session) -> tuple[str, str, str, bool | None]:
    """The slowest hop's p50 at the steady load against a bare pika hop's at the same rate
    (alone, as the target has it; four side by side, the pipeline's load on the broker, named)."""
    target = f"p50 of each hop <= {TARGET_HOP_P50:g}x a bare pika hop's at the same load"
    runs = [r for r in session.steady.get("project", []) if r.hops and r.status == "ok"]
    third = session.breakdown[-1] if session.breakdown else None  # the one at the steady rate
    if not (runs and third):
        return (target, "not measured", "-", None)
    alone, loaded = third.bare_run(1, "quorum"), third.bare_run(4, "quorum")
    if alone is None:
        return (target, "not measured (no bare hop alone that ran to the end)", "-", None)
    slowest = max(median([r.hops[hop][0] for r in runs if hop in r.hops]) for hop in runs[0].hops)
    ratio = slowest / alone.p50_ms
    side = f"; 4 bare hops side by side: {loaded.p50_ms:,.1f} ms" if loaded else ""
    measured = f"slowest hop p50 {slowest:,.1f} ms vs a bare hop alone {alone.p50_ms:,.1f} ms{side}"
    return (target, measured, f"{ratio:.2f} (need <= {TARGET_HOP_P50:g})", ratio <= TARGET_HOP_P50)


def share_target(
    main: dict[str, list[RunResult]],
    figures: dict[str, Figures],
    name: str,
    what: str,
    share: float,
) -> tuple[str, str, str, bool | None]:
    """This project with something on (contender `name`) against without it, in the same
    invocation: its rate at least `share` of the plain one's."""
    target = f"{what}: rate >= {share:.0%} of without it"
    without, variant = figures.get("project"), figures.get(name)
    if not (without and variant and without.measured and variant.measured):
        return (target, "not measured", "-", None)
    ratio = variant.rate / without.rate
    per_run = _paired(main[name], main["project"], lambda r: r.rate)
    measured = (
        f"{variant.rate:,.0f} vs {without.rate:,.0f} msg/s; p99 {variant.p99:,.0f} vs "
        f"{without.p99:,.0f} ms"
    )
    return (target, measured, f"{ratio:.2f} (need {share:g}){_spread(per_run)}", ratio >= share)


@dataclass(frozen=True)
class Pairing:
    """Two rows of the throughput table that differ in one thing, and what to call each."""

    title: str
    base: str  # the contender without it
    variant: str  # the contender with it
    columns: tuple[str, str, str]  # the base's, the variant's, the ratio's
    note: str


PAIRINGS = (
    Pairing(
        "What replication costs: three nodes against one",
        "project",
        "project-cluster",
        ("one node", "three-node cluster", "cluster / one node"),
        "The same processes and workload; the cluster's nodes run on this machine too, so "
        "they share its cores with each other and with the pipeline.",
    ),
    Pairing(
        "What TLS costs: the same node, in clear and over TLS",
        "project-node",
        "project-tls",
        ("in clear", "TLS", "TLS / in clear"),
        "The same processes, workload and node (a private one, which listens for both); every "
        "connection of the TLS row is `amqps://` with its certificate verified, as in compose.",
    ),
)


def pairing_section(session: Session, pairing: Pairing) -> list[str]:
    """`pairing`'s two rows side by side, where both were measured."""
    figures = _figures(session.main)
    base, variant = figures.get(pairing.base), figures.get(pairing.variant)
    if not (base and variant and base.measured and variant.measured):
        return []
    per_run = _paired(session.main[pairing.variant], session.main[pairing.base], lambda r: r.rate)
    return [
        f"### {pairing.title}",
        "",
        f"| figure | {' | '.join(pairing.columns)} |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {_num(a, digits)} | {_num(b, digits)} | {b / a:.2f} |"
            for label, a, b, digits in (
                ("msg/s", base.rate, variant.rate, 0),
                ("p50 ms", base.p50, variant.p50, 0),
                ("p99 ms", base.p99, variant.p99, 0),
                ("pipeline CPU s / 1k msgs", base.cpu, variant.cpu, 2),
                ("broker CPU s / 1k msgs (all nodes)", base.broker_cpu, variant.broker_cpu, 2),
            )
            if a > 0 and not math.isnan(b)
        ),
        "",
        f"{pairing.note} Rate ratio per run: "
        + (", ".join(f"{r:.2f}" for r in per_run) or "-")
        + ".",
        "",
    ]


def targets_table(session: Session) -> list[str]:
    lines = ["| target | measured | ratio | |", "|---|---|---|---|"]
    for target, measured, ratio, met in targets(session):
        verdict = "not measured" if met is None else ("**met**" if met else "**missed**")
        lines.append(f"| {target} | {measured} | {ratio} | {verdict} |")
    return lines


def profile_section(session: Session) -> list[str]:
    result = session.profile
    if result is None:
        return []
    lines = [
        "## Where this project's time goes (py-spy)",
        "",
        f"A separate run of this project (N={result.messages:,}; {result.status}, "
        f"{_num(result.rate)} msg/s while profiled) with `py-spy record --gil --rate 200` on "
        "`service_b` and `last`: samples are taken only of the thread holding the GIL, so they "
        "show where Python spends CPU (a socket send or receive releases the GIL and so "
        "appears only as the Python code around it). *self* is the share of samples in that "
        "function itself, *inclusive* the share in it or in what it calls.",
        "",
    ]
    seconds = result.completed / result.rate if result.rate and result.completed else 0
    for name, path in result.profiles.items():
        lines += pyspy.markdown(pyspy.read(path, name), seconds)
        lines.append("")
    return lines


def render(session: Session, machine_info: dict[str, str], command: str) -> str:
    args = session.args
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench --write docs/benchmarks.md` (`make bench`) down to "
        "the hand-written part at the end. -->",
        "",
        "The same workload through this project and through the designs and frameworks it "
        "could have been built on, one after another on the same broker and machine. Each "
        "run has a virtual host of its own; each stage is an OS process of its own, as in the "
        "compose deployment.",
        "",
        "## How it was run",
        "",
        f"```sh\n{command}\n```",
        "",
        "`make bench` runs `python -m bench --write docs/benchmarks.md` after installing "
        "`requirements-bench.txt` into `.venv`. "
        "`python -m bench --help` lists the flags (`--messages`, `--only`, `--repeat`, "
        "`--skip-steady`, `--skip-scaling`, ...).",
        "",
        *(f"- {key}: {value}" for key, value in machine_info.items()),
        "",
        "The machine is shared: other people's tests run on the same two cores and broker at "
        "the same time, and each figure moves by 10-30% between runs. Trust ratios between "
        "rows of one invocation more than any absolute figure"
        + (", and the medians of repeats." if args.repeat > 1 else "; `--repeat 3` gives medians."),
        "",
        f"## Throughput: {args.messages:,} messages, as fast as each publisher can",
        "",
        f'Workload: N={args.messages:,} messages `["seq-N"]`, three stages that do no work '
        "but append their name and a timestamp, then a sink; durable "
        f"{args.queue_type} queues (unless noted), persistent messages, publisher confirms "
        "where the contender supports them. "
        + (
            f"Medians of {args.repeat} runs per contender, interleaved."
            if args.repeat > 1
            else "One run per contender."
        ),
        "",
        *main_table(session),
        "",
        "- **msg/s**: completed messages / (last `completed_at` - first `created_at`), from "
        "the timestamps in the messages. **publish msg/s**: the publisher's own pace (messages "
        "/ span of `created_at`); when it is close to msg/s the publisher, not the pipeline, "
        "set the pace.",
        "- **p50 / p99**: `completed_at - created_at` of each message; in a flood this is "
        "mostly time queued behind earlier messages (see the steady-load table for latency).",
        "- **CPU s / 1k msgs**: user + system CPU of every process of the contender (publisher, "
        "stages, sink and their children), from `/proc/PID/stat` just before they stop (or "
        "`wait4` for those that exit), start-up before publishing excluded except the "
        "publisher's, per 1,000 completed messages. **broker CPU**: the RabbitMQ node's CPU "
        "over the same span, per 1,000 messages; the broker is shared, so this includes "
        "whatever else ran on it then.",
        "- **peak RSS**: the largest `VmHWM` of one process of that role. **lost**: N - "
        "distinct messages completed (worst run). **dup**: messages completed twice. "
        "**load**: the machine's 1-minute load average when publishing started (2 cores: "
        "above 2, processes queue for a CPU).",
        "",
        "Contenders:",
        "",
        *(f"- **{CONTENDERS[name].title}**: {CONTENDERS[name].notes}." for name in session.main),
        "",
        *(line for pairing in PAIRINGS for line in pairing_section(session, pairing)),
    ]
    if session.steady:
        lines += [
            "## Latency at a steady load",
            "",
            f"Every contender offered the same {session.steady_rate:,.0f} msg/s, about a third "
            "of this project's maximum measured above (`PUBLISH_RATE` for `first`, the same "
            f"pacing in the other publishers), for about {args.steady_seconds:g} s.",
            "",
            *steady_table(session),
            "",
            "Where that latency goes: p50 / p99 ms of each hop at the same steady load, from "
            "the timestamps each stage writes into the message (a hop is the time from one "
            "stage's handler to the next one's: the publish, the broker, the consumer's "
            "hand-over to a worker; the first includes the publisher's own delay).",
            "",
            *hops_table(session.steady),
            "",
        ]
    lines += breakdown.section(session.breakdown)
    if session.scaling:
        lines += [
            "## Scaling the slow stage",
            "",
            f"This project with `RANDOM_WAIT_MIN=RANDOM_WAIT_MAX={args.scaling_work:g}` on "
            f"service_b only ({args.scaling_work * 1000:g} ms of work per message, 10 workers "
            "per replica: 500 msg/s per replica at most), "
            f"{args.scaling_messages:,} messages, 1, 2 and 4 replicas of service_b: the "
            "compose demo's `--scale service_b=N`.",
            "",
            *scaling_table(session),
            "",
        ]
    lines += ["## Targets", "", *targets_table(session), ""]
    lines += profile_section(session)
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    kept = f"{KEEP}\n\n## Analysis\n\n(Nothing written yet.)\n"
    if path.exists():
        old = path.read_text()
        if KEEP in old:
            kept = old[old.index(KEEP) :]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n" + kept)


def as_json(session: Session) -> dict[str, object]:
    return {
        "main": {k: [r.to_json() for r in v] for k, v in session.main.items()},
        "steady_rate": session.steady_rate,
        "steady": {k: [r.to_json() for r in v] for k, v in session.steady.items()},
        "scaling": {str(k): [r.to_json() for r in v] for k, v in session.scaling.items()},
        "profile": session.profile.to_json() if session.profile else None,
    }
