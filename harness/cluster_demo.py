"""`python -m harness.cluster_demo` (`make cluster-demo`): the cluster demo, run and checked.

Runs `docker compose -f docker-compose.yml -f docker-compose.cluster.yml` for real, under a
project name of its own and on host ports of its own (so that a broker on 5672/15672 and the
one-node demo are left alone), kills a node mid-run and checks what docs/cluster.md promises:

1. three nodes form one cluster by themselves; once the apps have declared the queues, every
   quorum queue has a member on each node and the leaders are spread over the nodes; every node
   listens for AMQP over TLS alone, and every app connected over TLS;
2. `first` publishes NUMBER_OF_MESSAGES; once `last` has logged a quarter of them,
   `docker compose kill rabbitmq-2` (SIGKILL: a crash);
3. the pipeline carries on: every `seq-N` is logged by `last` exactly once as completed (a
   redelivered message may also give a `duplicate` record), `first` exits 0, no app container
   exits or restarts, and every queue ends empty, the dead-letter queue too;
4. `docker compose start rabbitmq-2`: the node rejoins, and every queue has all three members
   online again.

With `--partition SECONDS`, the node that leads service_b's queue is cut off the network for
that long instead of killed (`harness.partitions`), then put back: the same checks, and the
cluster whole again (three running nodes, no partitions) by itself (`make cluster-demo
CLUSTER_DEMO_ARGS="--partition 90"`: issue #20's run).

It prints what it sees along the way (the leaders, the apps' connections, the figures), and ends
with exit code 0 only if every check passed; the project's containers and volumes are removed
at the end unless `--keep`. Needs Docker and Compose v2 (`docker compose`).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence

from common.topology import PIPELINE_QUEUES
from harness import compose_demo
from harness.compose_demo import APPS, Compose, DemoFailed, wait_for, wait_for_completions
from harness.partitions import Partitions

FILES = ("docker-compose.yml", "docker-compose.cluster.yml")
NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
VICTIM = "rabbitmq-2"
# Replicas of each stage: the demo's 0.2-2 s of work per message and 10 workers give about
# 9 messages/s per replica, so two or three of each make the run about half a minute long.
SCALE = {"service_a": 2, "service_b": 3, "service_c": 2}
KILL_AT = 0.25  # of the messages completed when the node is killed
PORTS = {  # host ports, away from the machine's broker and Redis and from the one-node demo
    "RABBITMQ_AMQPS_PORT": "5690",
    "RABBITMQ_MANAGEMENT_PORT": "15690",
    "RABBITMQ_2_MANAGEMENT_PORT": "15691",
    "RABBITMQ_3_MANAGEMENT_PORT": "15692",
    "STORE_PORT": "6390",
}


def scale_options() -> list[str]:
    """`docker compose up`'s options for SCALE."""
    return [arg for stage, n in SCALE.items() for arg in ("--scale", f"{stage}={n}")]


def say(line: str) -> None:
    print(f"cluster-demo: {line}", flush=True)


def spread(queues: dict[str, dict]) -> str:
    leaders = Counter(queues[name]["leader"] for name in PIPELINE_QUEUES)
    return ", ".join(f"{node} leads {n}" for node, n in sorted(leaders.items()))


def check_replicas(queues: dict[str, dict], online: int) -> None:
    for name in (*PIPELINE_QUEUES, "dead_letter"):
        queue = queues.get(name)
        if queue is None:
            raise DemoFailed(f"no queue {name}: {sorted(queues)}")
        members = {node.split("@")[1] for node in queue["members"]}
        if members != set(NODES) or len(queue["online"]) != online:
            raise DemoFailed(f"queue {name}: members {queue['members']}, online {queue['online']}")


def connections(compose: Compose) -> Counter[str]:
    """How many app containers are connected to each node now (their last `connected`)."""
    last_url: dict[str, str] = {}
    for service in APPS:
        for container, record in compose.records(service):
            if record.get("message") == "connected":
                last_url[container] = str(record.get("url", "?"))
    nodes = Counter()
    for url in last_url.values():
        match = re.search(r"@([^:/,]+)", url)
        nodes[match[1] if match else url] += 1
    return nodes


def complaints(compose: Compose) -> Counter[str]:
    """The apps' WARNING and ERROR records, by message."""
    return Counter(
        str(record.get("message"))
        for service in APPS
        for _, record in compose.records(service)
        if record.get("level") in ("WARNING", "ERROR")
    )


def run_demo(compose: Compose, messages: int, partition: float = 0.0) -> None:
    say(f"project {compose.project}: {' + '.join(compose.files)}, {messages} messages")
    say(f"up in {compose.fresh_up(*scale_options()):.0f} s (nodes healthy, apps started)")

    status = json.loads(compose.rabbitmqctl(NODES[0], "cluster_status", "--formatter", "json"))
    running = sorted(status["running_nodes"])
    if running != sorted(f"rabbit@{node}" for node in NODES):
        raise DemoFailed(f"the nodes did not form one cluster: running {running}")
    say(f"one cluster: {', '.join(running)}")
    queues = wait_for(
        lambda: (q := compose.queues()) and all(n in q for n in PIPELINE_QUEUES) and q,
        60,
        "the apps to declare the queues",
    )
    check_replicas(queues, online=len(NODES))
    say(compose_demo.check_tls(compose, NODES))
    leaders = {queues[name]["leader"] for name in PIPELINE_QUEUES}
    if len(leaders) < 2:
        raise DemoFailed(f"the queue leaders are not spread: {spread(queues)}")
    say(f"every queue has a member on each node; leaders: {spread(queues)}")

    wait_for_completions(compose, messages * KILL_AT, f"{KILL_AT:.0%} of the messages to complete")
    before = connections(compose)
    say(f"apps connected per node: {dict(before)}")
    if partition:
        cut_off(compose, messages, partition)
        return
    done = len(compose_demo.completed(compose))
    compose("kill", VICTIM)
    killed_at = time.monotonic()
    say(f"killed {VICTIM} with {done} of {messages} messages completed")
    queues = wait_for(
        lambda: (
            (q := compose.queues())
            and all(q[n]["leader"] != f"rabbit@{VICTIM}" for n in PIPELINE_QUEUES)
            and q
        ),
        60,
        f"new leaders for the queues {VICTIM} led",
    )
    check_replicas(queues, online=len(NODES) - 1)
    say(f"2 of 3 members online; leaders now: {spread(queues)}")

    seen = wait_for_completions(compose, messages, f"all {messages} messages to complete")
    say(f"all {messages} completed {time.monotonic() - killed_at:.0f} s after the kill")
    say(f"apps connected per node now: {dict(connections(compose))}")
    say(f"warnings and errors the apps logged: {dict(complaints(compose)) or 'none'}")
    say(compose_demo.check_outcome(compose, messages, seen))

    compose("start", VICTIM)
    wait_for(
        lambda: all(len(q["online"]) == len(NODES) for q in compose.queues().values()),
        120,
        f"{VICTIM} to rejoin and every queue to have its members online",
    )
    say(f"{VICTIM} rejoined: every queue has its 3 members online")


def cut_off(compose: Compose, messages: int, seconds: float) -> None:
    """The partition: service_b's leader off the network for `seconds` (once noticed by the
    other nodes: longer than net_ticktime), then back."""
    leader = compose.leader_of("service_b")
    done = len(compose_demo.completed(compose))
    say(f"cutting {leader} (service_b's leader) off for {seconds:g} s, {done} of {messages} done")
    took = Partitions(compose, NODES).partition(leader, hold=seconds, both_sides=False)
    done = len(compose_demo.completed(compose))
    say(
        f"put back: the cluster was whole again {took:.0f} s after (3 running nodes, no "
        f"partitions); {done} of {messages} completed by now"
    )
    seen = wait_for_completions(compose, messages, f"all {messages} messages to complete")
    say(f"apps connected per node now: {dict(connections(compose))}")
    say(f"warnings and errors the apps logged: {dict(complaints(compose)) or 'none'}")
    say(compose_demo.check_outcome(compose, messages, seen))
    wait_for(
        lambda: all(len(q["online"]) == len(NODES) for q in compose.queues().values()),
        120,
        "every queue to have its members online",
    )
    say("every queue has its 3 members online")


def main(argv: Sequence[str] | None = None) -> int:
    parser = compose_demo.parser(
        "python -m harness.cluster_demo", __doc__, messages=400, project="rabbitholemq-cluster-demo"
    )
    parser.add_argument(
        "--file", action="append", default=[], help="one more compose file (as docker compose -f)"
    )
    parser.add_argument(
        "--partition",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="cut service_b's leader off the network this long instead of killing a node",
    )
    args = parser.parse_args(argv)
    env = {**PORTS, "NUMBER_OF_MESSAGES": str(args.messages)}  # the cookie: provision makes it
    compose = Compose(args.project, [*FILES, *args.file], env)
    demo = functools.partial(run_demo, compose, args.messages, args.partition)
    return compose_demo.run(say, compose, demo, args.keep)


if __name__ == "__main__":
    sys.exit(main())
