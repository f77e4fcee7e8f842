"""The hop breakdown's arithmetic (`bench.hop_steps`): each step of a hop from the stamps the
probe logged in each process, joined by message id; the broker's step across two processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.hop_steps import hop_steps


def stamps(message: int, process: str, **steps: float) -> dict[str, object]:
    """A probe's line: `steps` in ms after the message's own start (1000 + n seconds)."""
    start = 1000.0 + message
    return {"id": f"m{message}", "process": process} | {
        step: start + at / 1000 for step, at in steps.items()
    }


def test_each_step_is_measured_in_its_process_and_the_broker_across_two(tmp_path: Path) -> None:
    log = tmp_path / "hops.jsonl"
    lines = []
    for n in range(100):
        lines.append(stamps(n, "first", publish=0, wire=0.1))
        service = "service_a" if n % 2 else "service_a-2"  # a replica counts as its stage
        steps = {"deliver": 2.1, "pickup": 2.4, "handled": 2.5, "result": 2.7, "publish": 2.8}
        lines.append(stamps(n, service, **steps, wire=3.0))
        lines.append(stamps(n, "last", deliver=5.0, pickup=5.5, handled=6.0, result=6.5))
    lines.append({"id": "m0", "process": "service_c"})  # a step with no ends: not counted
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n{cut sho")
    steps = hop_steps(log)
    assert steps["service_a"]["broker"] == pytest.approx((2.0, 2.0), abs=1e-6)
    assert steps["service_a"]["to a worker"] == pytest.approx((0.3, 0.3), abs=1e-6)
    assert steps["service_a"]["handler"] == pytest.approx((0.1, 0.1), abs=1e-6)
    assert steps["service_a"]["back to the I/O thread"] == pytest.approx((0.2, 0.2), abs=1e-6)
    assert steps["service_a"]["into pika"] == pytest.approx((0.1, 0.1), abs=1e-6)
    assert steps["service_a"]["onto the wire"] == pytest.approx((0.2, 0.2), abs=1e-6)
    assert "broker" not in steps["last"]  # service_c logged nothing on the wire
    assert steps["last"]["to a worker"] == pytest.approx((0.5, 0.5), abs=1e-6)


def test_percentiles_come_from_every_message(tmp_path: Path) -> None:
    log = tmp_path / "hops.jsonl"
    lines = []
    for n in range(1, 101):  # service_a takes the message n ms after first put it on the wire
        lines.append({"id": f"m{n}", "process": "first", "wire": 10.0})
        lines.append({"id": f"m{n}", "process": "service_a", "deliver": 10.0 + n / 1000})
    log.write_text("\n".join(json.dumps(line) for line in lines))
    assert hop_steps(log)["service_a"]["broker"] == pytest.approx((50.0, 99.0), abs=1e-6)


def test_no_log_means_no_steps(tmp_path: Path) -> None:
    assert hop_steps(tmp_path / "none.jsonl") == {}
