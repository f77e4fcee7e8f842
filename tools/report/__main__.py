"""`python -m tools.report FILE|--store URL [--run ID] [--plot PNG] [--amqp-url URL]`: a run.

FILE is `last`'s RESULTS_FILE or saved `docker compose logs last` output; `--store URL` reads
the records `last` keeps in its store instead (keys STORE_KEY_PREFIX*); over TLS, the store and
the broker are verified against STORE_CA_FILE and AMQP_CA_FILE. The report prints
counts, how far the finishing order strays from sequence order, latency per stage and end to
end, and throughput; `--plot` also draws them (needs matplotlib).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from common.settings import Env, redact_url
from last.store_settings import DEFAULT_KEY_PREFIX, StoreSettings
from tools.cli import ArgumentParser, CliError, run_cli
from tools.report.analysis import PERCENTILES, Analysis, analyse
from tools.report.dead_letters import dead_letter_depth
from tools.report.ordering import describe_tau
from tools.report.records import Records, Run, read_records, read_store, runs

PROG = "python -m tools.report"
MATPLOTLIB_HINT = "pip install -r requirements-dev.txt (or: pip install matplotlib)"


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Report on a run of the pipeline from last's records: counts, ordering, "
        "latency per stage, throughput.",
    )
    parser.add_argument(
        "file",
        type=Path,
        nargs="?",
        metavar="FILE",
        help="last's RESULTS_FILE, or saved `docker compose logs last` output (LOG_FORMAT=json)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="instead of FILE, read the records from last's store (keys STORE_KEY_PREFIX*, by "
        f"default {DEFAULT_KEY_PREFIX}*), e.g. rediss://monitor:PASSWORD@localhost:6379/0 "
        "(over TLS, verified against STORE_CA_FILE, as compose's store)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="also draw the run into this PNG (matplotlib)"
    )
    parser.add_argument(
        "--run",
        metavar="ID",
        help="report on this run of `first` (its run_id); by default the latest in FILE",
    )
    parser.add_argument(
        "--amqp-url",
        metavar="URL",
        help="read the dead-letter count from this broker (queue DEAD_LETTER_QUEUE, by default "
        "dead_letter), e.g. amqps://monitor:PASSWORD@localhost:5671/%%2F (over TLS, verified "
        "against AMQP_CA_FILE, as compose's broker)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    plot = load_plotting() if args.plot else None
    if plot is not None:
        plot.check_target(args.plot)
    if (args.file is None) == (args.store is None):
        raise CliError("give either FILE or --store URL (see --help)")
    amqp_url = Env({"--amqp-url": args.amqp_url or ""}).amqp_url("--amqp-url", "")
    if args.store is None:
        source, records = str(args.file), read_records(args.file)
    else:
        prefix = Env().text("STORE_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        store = StoreSettings.checked("--store", args.store, prefix, Env().ca_file("STORE_CA_FILE"))
        source, records = f"{store.display_url} (keys {prefix}*)", read_store(store)
    run, others = choose_run(runs(records.records), args.run)
    analysis = analyse(run.records)
    if amqp_url:
        queue = Env().queue_name("DEAD_LETTER_QUEUE", "dead_letter")
        depth = dead_letter_depth(amqp_url, queue, Env().ca_file("AMQP_CA_FILE"))
        dead = describe_dead_letters(depth, queue, amqp_url)
    else:
        dead = "unknown: not in last's records (--amqp-url URL reads the dead-letter queue)"
    print("\n".join(report_lines(source, records, analysis, dead, run=run, others=others)))
    if plot is not None:
        plot.draw(analysis, args.plot)
        print(f"\nfigure written to {args.plot}")
    return 0


def load_plotting() -> ModuleType:
    """The plotting module, checked before any work so a missing matplotlib fails at once."""
    try:
        from tools.report import plot  # noqa: PLC0415 (matplotlib is optional: import on demand)
    except ImportError as error:
        raise CliError(f"--plot needs matplotlib ({error}): {MATPLOTLIB_HINT}") from None
    return plot


def choose_run(found: list[Run], wanted: str | None) -> tuple[Run, list[Run]]:
    """The run to report on (`wanted`, or the latest), and the others in the file."""
    if wanted is None:
        return found[-1], found[:-1]
    for run in found:
        if run.run_id == wanted:
            return run, [other for other in found if other is not run]
    known = ", ".join(describe_run(run) for run in found)
    raise CliError(f"no run {wanted!r} in the records; they hold {known}")


def describe_run(run: Run) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
    name = run.run_id if run.run_id is not None else "(no run_id)"
    return f"{name} ({len(run.records)} records, started {started})"


def describe_dead_letters(depth: int | None, queue: str, amqp_url: str) -> str:
    where = f"queue {queue!r} at {redact_url(amqp_url)}"
    if depth is None:
        return f"unknown: there is no {where}"
    return f"{depth} (messages now in {where}, from every run so far)"


def report_lines(
    source: str, records: Records, analysis: Analysis, dead: str, *, run: Run, others: list[Run]
) -> list[str]:
    order = analysis.ordering
    n = order.count
    lines = [
        f"{source}: {len(records.records)} completed and duplicate records"
        + (f", {records.skipped_lines} other lines skipped" if records.skipped_lines else ""),
        f"run {describe_run(run)}",
    ]
    if others:
        lines.append("other runs in the file (--run ID for one of them):")
        lines.extend(f"  {describe_run(other)}" for other in reversed(others))
    lines += [
        "",
        "counts",
        f"  completed              {n}",
        f"  duplicates             {analysis.duplicates}",
        f"  dead-lettered          {dead}",
        "",
        "ordering (sequence number against completion order)",
        f"  out of sequence        {order.out_of_sequence} of {n} finished after a message "
        "with a higher sequence number",
        f"  largest displacement   {displacement(analysis)}",
        "  Kendall's tau          "
        + (f"{order.tau:.3f}: " if order.tau is not None else "")
        + describe_tau(order.tau),
    ]
    if order.repeated_seqs:
        lines.append(
            f"  note                   {order.repeated_seqs} sequence numbers repeat (did "
            "`first` run more than once?); equal numbers count as in order"
        )
    lines += ["", *key_order_lines(analysis)]
    lines += ["", *latency_lines(analysis), "", f"throughput               {throughput(analysis)}"]
    return lines


def key_order_lines(analysis: Analysis) -> list[str]:
    by_key = analysis.key_ordering
    title = "per-key order (a key's messages against their publish order)"
    if by_key is None:
        return [title, "  keys                   none: the messages had no key (first's KEYS=0)"]
    worst = sorted(by_key.out_of_order.items(), key=lambda item: -item[1])[:3]
    lines = [
        title,
        f"  keys                   {by_key.keys}",
        f"  out of key order       {by_key.total} completions, in {by_key.keys_affected} of "
        f"{by_key.keys} keys (0 is what ORDERING=keyed promises)",
    ]
    if by_key.total:
        lines.append(
            "  most out of order      "
            + ", ".join(f"{key}: {count}" for key, count in worst if count)
        )
    return lines


def displacement(analysis: Analysis) -> str:
    order = analysis.ordering
    if order.most_displaced is None:
        return "0 places: every message finished in its place in sequence order"
    seq, sequence_place, finished = order.most_displaced
    return (
        f"{order.largest_displacement} places (seq-{seq}: place {sequence_place} in sequence "
        f"order, finished in place {finished})"
    )


def latency_lines(analysis: Analysis) -> list[str]:
    width = max(len(stage) for stage in analysis.latencies) + 2
    header = "".join(f"{name:>9}" for name, _ in PERCENTILES)
    lines = [
        "latency in seconds, per stage: from the previous stamp to its own (waiting in its "
        "queue + working)",
        f"  {'stage':<{width}}{header}",
    ]
    for stage in analysis.latencies:
        figures = analysis.percentiles(stage).values()
        lines.append(f"  {stage:<{width}}" + "".join(seconds(value) for value in figures))
    return lines


def seconds(value: float) -> str:
    return f"{'-':>9}" if math.isnan(value) else f"{value:>9.3f}"


def throughput(analysis: Analysis) -> str:
    n = len(analysis.completions)
    if analysis.throughput is None:
        return f"unknown: {n} messages in no measurable time"
    return (
        f"{analysis.throughput:.2f} messages/s: {n} messages in {analysis.elapsed:.1f} s, first "
        "created to last completed"
    )


if __name__ == "__main__":
    run_cli(PROG, main)
