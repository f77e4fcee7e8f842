"""The steps of each hop, from what `bench.hop_probe` logged in every process of a run.

A hop ends in the process that takes the message next (service_a, service_b, service_c, last):
its `broker` step runs from the moment the process before it put the message on the wire to the
moment pika hands it to this one (the broker's part, with the loopback and the time the bytes
wait for this process to read them); the others are this process's own, up to the moment its
output is on the wire in turn. Every figure is the p50 and p99, in ms, over the messages that
have both ends of the step.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

from common.topology import STAGES
from last.tally import percentile

PROCESSES = ("first", *STAGES, "last")
# (name, from, to): `from` is the process before's step for `broker`, this process's otherwise.
STEPS = (
    ("broker", "wire", "deliver"),
    ("to a worker", "deliver", "pickup"),
    ("handler", "pickup", "handled"),
    ("back to the I/O thread", "handled", "result"),
    ("into pika", "result", "publish"),
    ("onto the wire", "publish", "wire"),
)


def hop_steps(log: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """For each process a hop ends in, each step's (p50, p99) in ms."""
    messages: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by the end of the run
        process = str(record.get("process", "")).split("-")[0]  # service_b-2: a replica
        messages[record["id"]][process] = record
    steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for seen in messages.values():
        for before, process in itertools.pairwise(PROCESSES):
            here = seen.get(process)
            if here is None:
                continue
            for name, start, end in STEPS:
                origin = seen.get(before, {}) if name == "broker" else here
                if start in origin and end in here:
                    steps[process][name].append((here[end] - origin[start]) * 1000)
    return {
        process: {
            name: (percentile(sorted(times), 0.5), percentile(sorted(times), 0.99))
            for name, times in found.items()
        }
        for process, found in steps.items()
    }
