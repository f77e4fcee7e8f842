"""`python -m compare`: both pipelines through the same scenarios; the doc and its figure.

    python -m compare --write docs/http-vs-broker.md --plot docs/http-vs-broker.png
    python -m compare --short --only steady,crash          # the tests' sizes, a quick look

Runs go one after another, never two at once (they would share the machine's cores): for each
scenario the broker pipeline (a vhost of its own on the broker at AMQP_URL), then the HTTP one
(ports of its own on 127.0.0.1). Logs of every process stay in .cache/compare/.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common.settings import redact_url
from compare import report
from harness.broker import Vhost, broker_url, refusal
from harness.comparison import (
    FULL,
    SHORT,
    Observation,
    Scenario,
    Timing,
    broker_pipeline,
    http_pipeline,
    observe,
    scenarios,
)
from harness.processes import ROOT, Launcher

PIPELINES = ("broker", "http")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m compare", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the tests' short scenarios")
    parser.add_argument("--only", default="", help="comma-separated scenarios (default all)")
    parser.add_argument("--write", type=Path, help="write the report to this markdown file")
    parser.add_argument("--plot", type=Path, help="draw the figure into this PNG")
    args = parser.parse_args(argv)
    args.timing = SHORT if args.short else FULL
    known = [scenario.name for scenario in scenarios(args.timing)]
    args.names = [name.strip() for name in args.only.split(",") if name.strip()] or known
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(known)}")
    return args


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_one(pipeline: str, scenario: Scenario, timing: Timing, logdir: Path) -> Observation:
    logdir.mkdir(parents=True, exist_ok=True)
    if pipeline == "http":
        launcher = Launcher(logdir, LOG_FORMAT="json")
        try:
            return observe(http_pipeline(launcher, scenario, timing), scenario, timing)
        finally:
            launcher.kill_all()
    vhost = Vhost(label=f"compare-{scenario.name}")
    launcher = Launcher(logdir, AMQP_URL=vhost.url, LOG_FORMAT="json")
    try:
        return observe(broker_pipeline(launcher, vhost, scenario, timing), scenario, timing)
    finally:
        launcher.kill_all()
        vhost.delete()


def broker_problem() -> str | None:
    """Why the broker at AMQP_URL cannot host the runs (a vhost each, made with rabbitmqctl)."""
    url = broker_url()
    refused = refusal(url)
    if refused is not None:
        where = redact_url(url)
        return f"no RabbitMQ broker lets us in at {where} ({refused}): start one or set AMQP_URL"
    try:
        Vhost(label="compare-probe").delete()
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot make a vhost with rabbitmqctl ({error}): set RABBITMQCTL"
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    problem = broker_problem()
    if problem is not None:
        print(f"python -m compare: {problem}", file=sys.stderr)
        return 1
    command = shlex.join(["python", "-m", "compare", *argv])
    machine = report.machine()
    runs_dir = ROOT / ".cache" / "compare" / time.strftime("%Y%m%d-%H%M%S")
    chosen = [s for s in scenarios(args.timing) if s.name in args.names]
    progress(f"compare: {len(chosen)} scenarios x {len(PIPELINES)} pipelines, logs in {runs_dir}")
    began = time.monotonic()
    observations = []
    for scenario in chosen:
        for pipeline in PIPELINES:
            progress(f"{scenario.name} / {pipeline}: {scenario.title}")
            seen = run_one(
                pipeline, scenario, args.timing, runs_dir / f"{scenario.name}-{pipeline}"
            )
            progress("  " + report.one_line(seen))
            observations.append(seen)
    text = report.render(observations, args.timing, machine, command, args.plot)
    print(text)
    if args.write:
        args.write.write_text(text)
        progress(f"written to {args.write}")
    if args.plot:
        report.draw(observations, args.plot)
        progress(f"figure written to {args.plot}")
    progress(f"compare: done in {(time.monotonic() - began) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
