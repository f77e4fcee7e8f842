"""What the metrics say agrees with what `last` logged and the dead-letter queue holds."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from common.topology import STAGES
from harness.broker import Vhost
from harness.pipeline import PipelineRun
from harness.private_broker import free_ports
from harness.processes import wait_for

COUNT = 300
POISON = 7  # service_b fails on seq-7 every time: retried, then dead-lettered
DELIVERY_LIMIT = 3


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample at /metrics, by name and labels (the stage label left out)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if k != "stage")): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def count(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_each_stages_counts_agree_with_last_and_the_dead_letter_queue(start, vhost: Vhost) -> None:
    ports = dict(zip((*STAGES, "last"), free_ports(4), strict=True))
    common = {"DELIVERY_LIMIT": DELIVERY_LIMIT, "PROGRESS_INTERVAL": 0}
    run = PipelineRun(start, vhost, COUNT, env=common)
    last = run.start_last(METRICS_PORT=ports["last"])
    for stage in STAGES:
        poison = {"FAIL_ON_SEQ": POISON} if stage == "service_b" else {}
        run.start_service(stage, METRICS_PORT=ports[stage], WORKERS=4, **poison)
    first = run.start_first()  # gone before a scrape
    assert first.wait(60) == 0, first.tail()
    wait_for(lambda: len(last.messages("completed")) == COUNT - 1, 60, "every good message")
    wait_for(lambda: vhost.depth("dead_letter") == 1, 30, "the poison one dead-lettered")

    def settled(stage: str) -> bool:
        return count(scrape(ports[stage]), "rabbithole_messages_in_progress") == 0

    for stage in (*STAGES, "last"):
        wait_for(lambda s=stage: settled(s), 30, f"{stage} with nothing in progress")
    a, b, c, end = (scrape(ports[stage]) for stage in (*STAGES, "last"))
    handled = "rabbithole_messages_handled_total"

    assert count(a, "rabbithole_messages_received_total") == COUNT
    assert count(a, handled, outcome="forwarded") == COUNT
    assert count(a, "rabbithole_messages_confirmed_total") == COUNT

    assert count(b, "rabbithole_messages_received_total") == COUNT + DELIVERY_LIMIT - 1
    assert count(b, handled, outcome="forwarded") == COUNT - 1
    assert count(b, handled, outcome="failed") == DELIVERY_LIMIT
    assert count(b, "rabbithole_messages_requeued_total") == DELIVERY_LIMIT - 1
    assert count(b, "rabbithole_messages_dead_lettered_total") == vhost.depth("dead_letter") == 1
    assert count(b, "rabbithole_handler_duration_seconds_count") == COUNT + DELIVERY_LIMIT - 1

    assert count(c, handled, outcome="forwarded") == COUNT - 1
    completed = len(last.messages("completed"))
    assert count(end, "rabbithole_messages_completed_total") == completed == COUNT - 1
    assert count(end, handled, outcome="done") == completed
    assert count(end, "rabbithole_messages_duplicate_total") == 0
    assert count(end, "rabbithole_end_to_end_latency_seconds_count") == completed
