"""`python -m bench`: run every contender on the same broker, print the table, write the doc.

    python -m bench                                  # everything, N=20,000, one run each
    python -m bench --messages 5000 --only project,seed --skip-steady --skip-scaling
    python -m bench --repeat 3 --write docs/benchmarks.md

Runs go one after another (never two at once: they would share the two cores), each in a vhost
of its own, repeats interleaved so that a noisy minute does not hit one contender only. Then:
the latency at a steady load of a third of this project's measured maximum (for every
contender, at the same offered rate); the scaling run (20 ms of work per message in service_b,
1, 2 and 4 replicas); a profiled run of this project (py-spy on service_b and last).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from bench import report
from bench.breakdown import run_breakdown
from bench.contenders import CONTENDERS
from bench.runs import median
from bench.session import Session
from harness.processes import ROOT

SCALING_REPLICAS = (1, 2, 4)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", "-n", type=int, default=20_000, help="N (default 20000)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated contenders (default all: {','.join(CONTENDERS)})",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians are shown")
    parser.add_argument("--queue-type", choices=("quorum", "classic"), default="quorum")
    parser.add_argument("--skip-steady", action="store_true", help="no steady-load runs")
    parser.add_argument("--skip-scaling", action="store_true", help="no scaling runs")
    parser.add_argument("--skip-profile", action="store_true", help="no py-spy run")
    parser.add_argument(
        "--skip-breakdown", action="store_true", help="no hop breakdown (bench.breakdown)"
    )
    parser.add_argument(
        "--steady-rate", type=float, default=0, help="offered msg/s (default: project max / 3)"
    )
    parser.add_argument("--steady-seconds", type=float, default=10, help="length of steady runs")
    parser.add_argument("--scaling-messages", type=int, default=3000)
    parser.add_argument("--scaling-work", type=float, default=0.02, help="s per msg, service_b")
    parser.add_argument("--stall", type=float, default=30, help="s without progress = stalled")
    parser.add_argument("--run-deadline", type=float, default=240, help="s for one run at most")
    parser.add_argument(
        "--budget", type=float, default=840, help="s for everything; later runs are skipped"
    )
    parser.add_argument("--write", type=Path, help="write the report to this markdown file")
    parser.add_argument("--json", type=Path, help="also write every run's figures as JSON")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CONTENDERS)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")
    args.contenders = [CONTENDERS[n] for n in names]
    if args.messages < 1 or args.repeat < 1:
        parser.error("--messages and --repeat must be at least 1")
    return args


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    runs_dir = ROOT / ".cache" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    session = Session(args, runs_dir, log=progress)
    machine = report.machine()
    progress(f"bench: {len(args.contenders)} contenders, N={args.messages:,}, logs in {runs_dir}")

    try:
        run_all(args, session)
    finally:
        session.close()

    text = report.render(session, machine, command)
    print(text)
    if args.write:
        report.write(args.write, text)
        progress(f"written to {args.write}")
    if args.json:
        args.json.write_text(json.dumps(report.as_json(session), indent=1) + "\n")
    progress(f"bench: done in {session.elapsed() / 60:.1f} min")
    return 0


def run_all(args: argparse.Namespace, session: Session) -> None:
    """Every run the arguments ask for, one after another, into `session`."""
    for repeat in range(1, args.repeat + 1):
        progress(f"throughput, run {repeat}/{args.repeat}")
        for contender in args.contenders:
            result = session.run(contender, f"{contender.name}-{repeat}")
            session.main.setdefault(contender.name, []).append(result)

    project = CONTENDERS["project"]
    project_rate = median([r.rate for r in session.main.get("project", []) if r.completed])
    session.steady_rate = args.steady_rate or (project_rate / 3 if project_rate > 0 else 0)
    if not args.skip_steady and session.steady_rate > 0:
        rate = round(session.steady_rate)
        messages = max(100, round(rate * args.steady_seconds))
        progress(f"steady load: {rate} msg/s offered, {messages:,} messages")
        for repeat in range(1, args.repeat + 1):
            for contender in args.contenders:
                result = session.run(
                    contender, f"steady-{contender.name}-{repeat}", messages=messages, rate=rate
                )
                session.steady.setdefault(contender.name, []).append(result)

    wants_project = project in args.contenders
    if not args.skip_scaling and wants_project:
        progress(f"scaling: {args.scaling_work * 1000:g} ms of work per message in service_b")
        for repeat in range(1, args.repeat + 1):
            for replicas in SCALING_REPLICAS:
                result = session.run(
                    project,
                    f"scaling-{replicas}-{repeat}",
                    messages=args.scaling_messages,
                    replicas=replicas,
                    work=args.scaling_work,
                )
                session.scaling.setdefault(replicas, []).append(result)

    if not args.skip_breakdown and wants_project and session.steady_rate > 0:
        progress("breakdown: each hop's steps, and bare pika hops at the same load")
        session.breakdown = run_breakdown(session, session.steady_rate, args.steady_seconds)

    if not args.skip_profile and wants_project:
        progress("profile: this project with py-spy on service_b and last")
        session.profile = session.run(project, "profile", profile=True)


if __name__ == "__main__":
    sys.exit(main())
