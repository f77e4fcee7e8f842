"""`python -m harness.keyed_demo` (`make keyed-demo`): the keyed-order demo, run and checked.

Runs `ORDERING=keyed KEYS=20 docker compose up --build --scale service_b=3` for real, under a
project name of its own and on host ports of its own, and checks what docs/ordering.md
promises:

1. the partitions of service_b spread over its three replicas (the broker makes the replica
   with the highest rendezvous priority active on each; RabbitMQ 4.x honours that);
2. once `last` has logged a fifth of the messages, the replica holding the most partitions is
   killed (`docker kill`: SIGKILL), and its partitions pass to the others;
3. every message completes once, no other app dies, every queue ends empty, and the report
   (`python -m tools.report` on `last`'s records) counts 0 completions out of key order.

It ends with exit code 0 only if every check passed; the containers and volumes are removed at
the end unless `--keep`. Needs Docker and Compose v2.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from harness import compose_demo
from harness.compose_demo import BROKER, Compose, DemoFailed, wait_for, wait_for_completions
from harness.processes import ROOT
from tools.queue_stats import Rabbitmqctl

STAGE = "service_b"
REPLICAS = 3
KEYS = 20
PARTITIONS = 6  # the default: even over 1, 2, 3 or 6 replicas
KILL_AT = 0.2  # of the messages completed when the busiest replica is killed
PORTS = {  # host ports, away from the machine's broker and Redis and from the other demos
    "RABBITMQ_AMQPS_PORT": "5693",
    "RABBITMQ_MANAGEMENT_PORT": "15693",
    "STORE_PORT": "6393",
}


def say(line: str) -> None:
    print(f"keyed-demo: {line}", flush=True)


def holders(compose: Compose) -> dict[str, str]:
    """service_b's partition -> the container (its host name) whose consumer is active."""
    rabbitmqctl = ["docker", "compose", "-p", compose.project]
    for file in compose.files:
        rabbitmqctl += ["-f", file]
    rabbitmqctl += ["exec", "-T", BROKER, "rabbitmqctl"]
    found = Rabbitmqctl(rabbitmqctl, "/").holders()
    # A connection is named `<stage>@<REPLICA_ID>`, and REPLICA_ID is `<host name>/<pid>`.
    return {
        queue: name.partition("@")[2].partition("/")[0]
        for queue, name in found.items()
        if queue.startswith(f"{STAGE}.")
    }


def replicas(compose: Compose) -> dict[str, str]:
    """service_b's containers by host name (a container's host name is its short id)."""
    ids = compose("ps", "--quiet", STAGE).split()
    return {
        container_id[:12]: subprocess.check_output(
            ["docker", "inspect", "--format", "{{.Name}}", container_id], text=True
        ).strip("/\n")
        for container_id in ids
    }


def run_demo(compose: Compose, messages: int, logdir: Path) -> None:
    say(f"project {compose.project}: ORDERING=keyed KEYS={KEYS}, {messages} messages")
    say(f"up in {compose.fresh_up('--scale', f'{STAGE}={REPLICAS}'):.0f} s")
    names = replicas(compose)
    held = wait_for(
        lambda: len(h := holders(compose)) == PARTITIONS and h,
        60,
        f"every partition of {STAGE} to be held",
    )
    spread = Counter(names.get(host, host) for host in held.values())
    say(f"partitions of {STAGE} per replica: {dict(spread)}")
    if len(spread) < 2:
        raise DemoFailed(f"every partition on one replica: {held}")

    wait_for_completions(compose, messages * KILL_AT, f"{KILL_AT:.0%} of the messages to complete")
    victim, count = spread.most_common(1)[0]
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True, timeout=60)
    say(f"killed {victim}, which held {count} of {PARTITIONS} partitions")
    moved = wait_for(
        lambda: (h := holders(compose)) and victim not in {names.get(x) for x in h.values()} and h,
        60,
        f"{victim}'s partitions to pass to the others",
    )
    say(f"partitions per replica now: {dict(Counter(names.get(h, h) for h in moved.values()))}")

    seen = wait_for_completions(compose, messages, f"all {messages} messages to complete")
    summary = compose_demo.check_outcome(compose, messages, seen, killed={victim})
    say(summary)
    records = logdir / "last.log"
    records.write_text(compose("logs", "--no-color", "last"))
    report = subprocess.run(
        [sys.executable, "-m", "tools.report", str(records)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next((x for x in report.stdout.splitlines() if "out of key order" in x), "")
    say(f"report: {line.strip() or report.stderr.strip()}")
    if " 0 completions, in 0 of " not in line:
        raise DemoFailed(f"per-key order broken: {line or report.stderr}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = compose_demo.parser(
        "python -m harness.keyed_demo", __doc__, messages=300, project="rabbitholemq-keyed-demo"
    )
    args = parser.parse_args(argv)
    env = {
        **PORTS,
        "ORDERING": "keyed",
        "KEYS": str(KEYS),
        "PARTITIONS": str(PARTITIONS),
        "NUMBER_OF_MESSAGES": str(args.messages),
    }
    compose = Compose(args.project, ["docker-compose.yml"], env)
    logdir = ROOT / ".cache" / "keyed-demo"
    logdir.mkdir(parents=True, exist_ok=True)
    return compose_demo.run(
        say, compose, lambda: run_demo(compose, args.messages, logdir), args.keep
    )


if __name__ == "__main__":
    sys.exit(main())
