"""`python -m tools.watch [--interval S] [--count N]`: the pipeline's queues, every second.

Prints the depth of each queue of the pipeline (ready, and unacknowledged: held by a consumer),
its consumers and its rates, so that the backlog of a stage can be seen to grow and, after
`--scale`, drain; for quorum queues also how many of its members are online and which node
leads it, so that a cluster losing a node can be seen to elect new leaders. The management API
(MANAGEMENT_URL, with the user, password and virtual host of AMQP_URL, or of its first URL where
it names several nodes) is asked first; when it does not answer, rabbitmqctl (RABBITMQCTL).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import unquote, urlsplit

from common.settings import DEFAULT_AMQP_URL, BrokerSettings, Env, SettingsError, redact_url
from common.topology import every_input
from tools.cli import RUN_FAILED, ArgumentParser, CliError, run_cli
from tools.queue_stats import ManagementApi, QueueStats, Rabbitmqctl, Source, SourceError

PROG = "python -m tools.watch"
# change/s is measured over this many seconds, not between two samples: the broker refreshes
# its counts (of quorum queues, and all the management API's) every 5 s by default, so
# per-second differences would jump between 0 and five times the real rate.
RATE_WINDOW_S = 10.0
DEFAULT_MANAGEMENT_URL = "http://localhost:15672"
Sample = dict[str, QueueStats]


@dataclass(frozen=True)
class WatchSettings:
    vhost: str
    user: str
    password: str
    management_url: str
    rabbitmqctl: list[str]
    queues: tuple[str, ...]
    keyed: bool = False  # ORDERING=keyed: the stages' partitions, and who holds each

    @classmethod
    def from_env(cls, env: Env) -> WatchSettings:
        # Every node of a cluster serves the same users and virtual hosts: the first will do.
        urls = env.amqp_urls("AMQP_URL", DEFAULT_AMQP_URL, env.secret("AMQP_PASSWORD_FILE"))
        url = urlsplit(urls[0])
        management_url = env.text("MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL, max_length=2048)
        parts = urlsplit(management_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            allowed = "a URL like http://host:15672 (the user and password come from AMQP_URL)"
            raise SettingsError("MANAGEMENT_URL", redact_url(management_url), allowed)
        command = env.text("RABBITMQCTL", "rabbitmqctl", max_length=4096)
        try:
            rabbitmqctl = shlex.split(command)
        except ValueError as error:
            raise SettingsError("RABBITMQCTL", command, f"a shell command ({error})") from None
        if not rabbitmqctl:
            raise SettingsError("RABBITMQCTL", command, "a shell command")
        dead_letter_queue = env.queue_name("DEAD_LETTER_QUEUE", "dead_letter")
        layout = BrokerSettings.from_env(env)  # ORDERING and PARTITIONS, as the pipeline has them
        queues = list(every_input(layout))
        return cls(
            vhost=unquote(url.path[1:]) if len(url.path) > 1 else "/",
            user=unquote(url.username or "guest"),
            password=unquote(url.password or "guest"),
            management_url=management_url,
            rabbitmqctl=rabbitmqctl,
            queues=(*queues, dead_letter_queue),
            keyed=layout.ordering == "keyed",
        )


def parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Print the depth and rates of the pipeline's queues every --interval seconds.",
    )
    parser.add_argument(
        "--interval",
        type=seconds,
        default=1.0,
        metavar="S",
        help="seconds between samples (default 1)",
    )
    parser.add_argument(
        "--count", type=positive, metavar="N", help="stop after N samples (default: run until ^C)"
    )
    return parser


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.1 to 3600")
    return value


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    settings = WatchSettings.from_env(Env())
    try:
        source, first, failures = open_source(settings)
        print(introduction(settings, source, failures, args.interval), flush=True)
        watch(
            source,
            first,
            settings.queues,
            interval=args.interval,
            count=args.count,
            out=sys.stdout,
            keyed=settings.keyed,
        )
    except KeyboardInterrupt:
        print()
    return 0


def open_source(settings: WatchSettings) -> tuple[Source, Sample, list[str]]:
    """The first source that answers, its answer, and why the ones before it did not."""
    sources: list[Source] = [
        ManagementApi(settings.management_url, settings.user, settings.password, settings.vhost),
        Rabbitmqctl(settings.rabbitmqctl, settings.vhost),
    ]
    failures = []
    for source in sources:
        try:
            return source, take(source, keyed=settings.keyed), failures
        except SourceError as error:
            failures.append(f"{source.description}: {error}")
    raise CliError(
        f"cannot read the queues of virtual host {settings.vhost!r}: {'; '.join(failures)} "
        "(check AMQP_URL, MANAGEMENT_URL and RABBITMQCTL: see docs/watching.md)",
        RUN_FAILED,
    )


def introduction(
    settings: WatchSettings, source: Source, failures: list[str], interval: float
) -> str:
    lines = [
        f"queues of virtual host {settings.vhost!r} from {source.description}, every "
        f"{interval:g} s (Ctrl-C to stop)",
        "ready: waiting for a consumer; unacked: delivered to a consumer, not yet acknowledged",
    ]
    lines.extend(f"(not {failure})" for failure in failures)
    change = "change/s"
    if isinstance(source, ManagementApi):
        lines.append("in/s, out/s: messages published into and acknowledged out of it per second")
        change += " (where the broker keeps no rates)"
    lines.append(
        f"{change}: change of ready + unacked per second over the last {RATE_WINDOW_S:g} s, "
        "+ grows, - drains"
    )
    lines.append(
        "online: a quorum queue's members (replicas) that are up, of all; leader: the node that "
        "leads it"
    )
    if settings.keyed:
        lines.append(
            "held by: the replica (its stage@REPLICA_ID) whose consumer is the partition's one "
            "active consumer"
        )
    lines.append("the broker refreshes these counts every few seconds (5 s by default)")
    return "\n".join(lines)


def take(source: Source, *, keyed: bool) -> Sample:
    """A sample of the queues; in keyed mode, with who holds each partition."""
    sample = source.sample()
    if not keyed:
        return sample
    holders = source.holders()
    return {
        name: dataclasses.replace(stats, holder=holders.get(name)) for name, stats in sample.items()
    }


def watch(
    source: Source,
    first: Sample,
    queues: Sequence[str],
    *,
    interval: float,
    count: int | None,
    out: TextIO,
    keyed: bool = False,
) -> None:
    """Print `first`, then a new sample every `interval` seconds, `count` in all (or for ever).

    On a terminal each sample replaces the one before it, in place; into a pipe or a file, each
    is a new block of lines, for the record."""
    in_place = out.isatty()
    sample: Sample | None = first
    recent: deque[tuple[float, Sample]] = deque()  # for change/s: samples of the last window
    taken_at = next_at = time.monotonic()
    shown = 0
    previous_lines = 0
    while True:
        if sample is None:
            block = f"\n{time.strftime('%H:%M:%S')}  no answer from {source.description}\n"
            recent.clear()
        else:
            block = "\n" + render(time.strftime("%H:%M:%S"), queues, sample, recent, taken_at)
            recent.append((taken_at, sample))
            while len(recent) > 1 and recent[1][0] <= taken_at + interval - RATE_WINDOW_S:
                recent.popleft()
        if in_place and previous_lines:
            out.write(f"\x1b[{previous_lines}F\x1b[J")  # up to the last block's start, clear
        out.write(block)
        previous_lines = block.count("\n")
        out.flush()
        shown += 1
        if count is not None and shown >= count:
            return
        next_at = max(next_at + interval, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
        taken_at = time.monotonic()
        try:
            sample = take(source, keyed=keyed)
        except SourceError:
            sample = None


def render(
    clock: str,
    queues: Sequence[str],
    sample: Sample,
    recent: Sequence[tuple[float, Sample]],
    taken_at: float,
) -> str:
    """One block: a header row, then a row per queue; change/s is measured over `recent`."""
    width = max(len(q) for q in queues) + 2
    has_rates = any(stats.in_rate is not None for stats in sample.values())
    replicated = any(stats.members is not None for stats in sample.values())
    held = any(stats.holder is not None for stats in sample.values())
    rates = f"{'in/s':>9}{'out/s':>9}" if has_rates else f"{'change/s':>10}"
    header = f"{clock}  {'queue':<{width}}{'ready':>8}{'unacked':>9}{'consumers':>11}{rates}"
    header += f"{'online':>8}  {'leader':<24}" if replicated else ""
    lines = [(header + ("  held by" if held else "")).rstrip()]
    for queue in queues:
        stats = sample.get(queue)
        if stats is None:
            lines.append(f"{'':10}{queue:<{width}}{'-':>8}{'-':>9}{'-':>11}   (no such queue yet)")
            continue
        row = f"{'':10}{queue:<{width}}{stats.ready:>8}{stats.unacked:>9}{stats.consumers:>11}"
        if has_rates:
            row += f"{stats.in_rate or 0.0:>9.1f}{stats.out_rate or 0.0:>9.1f}"
        else:
            row += f"{change_rate(queue, stats, recent, taken_at):>10}"
        if replicated:
            row += f"{replicas(stats):>8}  {stats.leader or '-':<24}"
        if held:
            row += f"  {stats.holder or '-'}"
        lines.append(row.rstrip())
    return "\n".join(lines) + "\n"


def replicas(stats: QueueStats) -> str:
    """ "2/3": members online of all (a quorum queue), or "-" (a classic one)."""
    if stats.members is None:
        return "-"
    return f"{stats.online}/{stats.members}"


def change_rate(
    queue: str, stats: QueueStats, recent: Sequence[tuple[float, Sample]], taken_at: float
) -> str:
    """Change of the queue's depth per second since the oldest recent sample that shows it."""
    for then, sample in recent:
        if queue in sample and then < taken_at:
            return f"{(stats.depth - sample[queue].depth) / (taken_at - then):+.1f}"
    return "-"


if __name__ == "__main__":
    run_cli(PROG, main)
