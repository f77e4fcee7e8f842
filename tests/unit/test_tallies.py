"""The I/O thread's figures (`common.tallies`) read back as Prometheus reads any metric."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.tallies import Tallies

BOUNDS = (0.01, 0.1, 1.0)


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_by_label_gauges_and_histograms_are_what_prometheus_client_writes() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tallies = Tallies("service_b")
    ours.register(tallies)
    forwarded = tallies.counter("rabbithole_handled", "by outcome", outcome="forwarded")
    failed = tallies.counter("rabbithole_handled", "by outcome", outcome="failed")
    in_progress = tallies.gauge("rabbithole_in_progress", "now")
    spread = tallies.histogram("rabbithole_seconds", "how long", BOUNDS)
    reference = Histogram(
        "rabbithole_seconds", "how long", ["stage"], buckets=BOUNDS, registry=theirs
    ).labels("service_b")

    forwarded.inc()
    forwarded.inc(2)
    failed.inc()
    in_progress.inc()
    in_progress.inc()
    in_progress.dec()
    for seconds in (0.005, 0.01, 0.05, 0.5, 1.0, 7.0):  # the bounds themselves included
        spread.observe(seconds)
        reference.observe(seconds)

    found = samples(ours)
    stage = ("stage", "service_b")
    assert found[("rabbithole_handled_total", frozenset({stage, ("outcome", "forwarded")}))] == 3
    assert found[("rabbithole_handled_total", frozenset({stage, ("outcome", "failed")}))] == 1
    assert found[("rabbithole_in_progress", frozenset({stage}))] == 1
    histogram = {key: value for key, value in found.items() if key[0].startswith("rabbithole_s")}
    expected = {
        key: value
        for key, value in samples(theirs).items()
        if key[0].startswith("rabbithole_s") and not key[0].endswith("_created")
    }
    assert histogram == expected
