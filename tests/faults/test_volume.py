"""Volume: a thousand malformed bodies among good messages, and a 100,000-message spike."""

from __future__ import annotations

import json
import random

import pika
import pytest

from common.messages import InvalidMessage, Message
from common.topology import STAGES
from harness.pipeline import PipelineRun
from harness.processes import wait_for

MAX_BODY_BYTES = 4096  # the default of MAX_BODY_BYTES


def malformed_bodies(count: int, seed: int = 1) -> list[bytes]:
    """A reproducible corpus of every kind of body the pipeline must refuse."""
    rng = random.Random(seed)
    wrong_json = [
        {},
        {"history": ["seq-1"]},
        "seq-1",
        1,
        -0.5,
        None,
        True,
        [],
        [1],
        [None],
        [["seq-1"]],
        ["seq-1", 2],
        ["seq-1", {"a": 1}],
        [""],
        ["seq-"],
        ["seq-x"],
        ["SEQ-1"],
        ["seq-1 "],
        [" seq-1"],
        ["seq--1"],
        ["seq-1.5"],
        ["service_a", "seq-1"],
        ["seq-1", ""],
        ["seq-1"] + ["service_a"] * 20,
        ["seq-1", "x" * 200],
    ]
    makers = [
        lambda: rng.randbytes(rng.randint(1, 200)),  # random bytes
        lambda: b"\xff\xfe" + rng.randbytes(rng.randint(0, 50)),  # not UTF-8
        lambda: b'["seq-1", "\xc3\x28"]',  # invalid UTF-8 sequence inside JSON
        lambda: json.dumps(rng.choice(wrong_json)).encode(),  # JSON of a wrong shape
        lambda: b"",  # empty
        lambda: b'["seq-1","' + b"a" * MAX_BODY_BYTES + b'"]',  # over the size limit
        lambda: b"[" * (n := rng.randint(100, 2000)) + b"]" * n,  # deeply nested
        lambda: b"[" * 3000,  # deeply nested and truncated
        lambda: rng.choice([b"[1e999999]", b"[" + b"9" * 4000 + b"]", b"[-1e400]"]),
        lambda: b'["seq-%d"' % rng.randint(1, 9),  # truncated JSON
        lambda: b"NaN",
    ]
    bodies = [makers[i % len(makers)]() for i in range(count)]
    for body in bodies:  # the corpus must really be malformed
        with pytest.raises(InvalidMessage):
            Message.decode(body, good_properties(), MAX_BODY_BYTES)
    return bodies


def good_properties() -> pika.BasicProperties:
    return Message.first(1, 0.0).encode()[1]


def test_a_thousand_malformed_bodies_among_good_ones(start, vhost) -> None:
    bad = malformed_bodies(1100)
    run = PipelineRun(start, vhost, 2000)
    run.start_last()
    for queue in STAGES:
        run.start_service(queue)
    run.wait_for_consumers()
    run.start_first()
    with vhost.channel() as channel:
        channel.confirm_delivery()
        for n, body in enumerate(bad):
            properties = good_properties() if n % 3 else None  # some without any properties
            channel.basic_publish("", "service_a", body, properties, mandatory=True)
    run.dead_bodies.update(bad)
    run.finish("1,100 malformed bodies among 2,000 good messages")
    rejected = run.services["service_a"][0].messages("dead-lettered")
    assert len(rejected) == len(bad)  # one line each, no flood


def test_load_spike_of_100k_messages(start, vhost) -> None:
    count = 100_000
    run = PipelineRun(start, vhost, count)
    run.start_all(RANDOM_WAIT_MIN=0, RANDOM_WAIT_MAX=0.002)
    depths = []

    def service_a_drained() -> bool:
        depths.append(vhost.depth("service_a"))
        return not run.firsts[0].running and depths[-1] == 0

    wait_for(service_a_drained, 400, "the burst to drain from service_a", interval=1)
    peak_rss = {p.name: p.peak_rss_kib() for p in run.processes() if p.running}
    rss = ", ".join(f"{name.split('-')[0]} {kib / 1024:.0f}" for name, kib in peak_rss.items())
    notes = f"peak depth of service_a {max(depths):,}; peak RSS MiB: {rss}"
    run.finish("load spike: 100,000 messages as fast as first publishes", 400, notes)
    assert max(depths) > 10_000, "the burst never queued up"
    for name, kib in peak_rss.items():
        assert kib < 200 * 1024, f"{name} peaked at {kib} KiB"
