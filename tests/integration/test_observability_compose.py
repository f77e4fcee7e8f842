"""The compose profile `observability` run for real in Docker (skipped where Docker does not
answer, like the other docker tests): the pipeline with `service_b` scaled to three and the
profile's Prometheus (Grafana and Jaeger left out: their images cannot be built here).

Prometheus must find the three `service_b` replicas by itself and the broker node, its config
must pass `promtool check config`, every PromQL expression of the provisioned dashboards must
return data while the pipeline runs (a renamed metric breaks this), a SIGKILLed replica must be
a target gone and a redelivery, and the completions Prometheus counted must be `last`'s: every
message once.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator

import pytest

from harness.compose_demo import Compose, check_outcome, wait_for, wait_for_completions
from harness.docker_broker import docker_available
from tests.unit.test_compose_file import APP_SERVICES, BROKER, STORE
from tests.unit.test_grafana_provisioning import DASHBOARDS, PIPELINE_DASHBOARD, expressions

pytestmark = pytest.mark.docker

MESSAGES = 600
# first publishes 15 a second for 40 s, faster than service_a's ten workers take them (0.2 to 2 s
# each, about 9 a second): its queue grows, then drains; first stays up long enough to be scraped.
PUBLISH_RATE = 15
SCALE = 3  # service_b's replicas
SERVICES = (BROKER, STORE, *APP_SERVICES, "prometheus")
TARGETS_TIMEOUT_S = 120
DATA_TIMEOUT_S = 150  # the expressions' data: from the first publishes to last's completions
QUERY_INTERVAL_S = 2.0
SCRAPE_TIMEOUT_S = 30  # a few scrape intervals (observability/prometheus/prometheus.yml)
OVERVIEW = "RabbitMQ-Overview"
LABEL_LISTS = r"\{[^}]*\}|\b(?:on|ignoring|group_left|group_right|by|without)\s*\([^)]*\)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    """The HTTP API of the profile's Prometheus, at its published port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = json.load(answer)
        except OSError:
            return {}  # not up yet
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict]:
        return self.get("query", query=expression).get("result", [])

    def targets_up(self) -> dict[str, int]:
        """Targets up per compose service (pipeline) or job (the broker's)."""
        counts: dict[str, int] = {}
        for target in self.get("targets", state="active").get("activeTargets", []):
            if target["health"] == "up":
                key = target["labels"].get("service") or target["labels"]["job"]
                counts[key] = counts.get(key, 0) + 1
        return counts


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Compose, Prometheus]]:
    if not docker_available():
        pytest.skip("no Docker engine answers: the observability profile runs in Docker")
    ports = {
        name: str(free_port())
        for name in ("RABBITMQ_AMQPS_PORT", "RABBITMQ_MANAGEMENT_PORT", "STORE_PORT")
    }
    prometheus_port = free_port()
    env = {
        **ports,
        "PROMETHEUS_PORT": str(prometheus_port),
        "COMPOSE_PROFILES": "observability",
        "NUMBER_OF_MESSAGES": str(MESSAGES),
        "PUBLISH_RATE": str(PUBLISH_RATE),
    }
    compose = Compose(f"rhtest-observability-{secrets.token_hex(3)}", ["docker-compose.yml"], env)
    for image in pulled_images(compose):
        found = subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False
        )
        if found.returncode != 0:
            pytest.skip(f"image {image} is not here, and cannot be built (pull it first)")
    try:
        compose.fresh_up("--scale", f"service_b={SCALE}", *SERVICES)
        yield compose, Prometheus(prometheus_port)
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)


def pulled_images(compose: Compose) -> set[str]:
    """The images of SERVICES that Compose would pull rather than build."""
    services = json.loads(compose("config", "--format", "json"))["services"]
    return {services[name]["image"] for name in SERVICES if "build" not in services[name]} - {
        services["first"]["image"]  # built once, by first, for every app
    }


def overview_variables(prometheus: Prometheus) -> dict[str, str]:
    """What Grafana would pick for RabbitMQ's Overview's variables here, and its intervals."""
    [identity] = [
        series["metric"]
        for series in prometheus.query('rabbitmq_identity_info{job="rabbitmq"}')
    ]  # fmt: skip
    return {
        "$__rate_interval": "1m",
        "$__range": "5m",
        "$namespace": "",  # no namespace label outside Kubernetes: the variable is empty
        "$rabbitmq_cluster": identity["rabbitmq_cluster"],
        "$endpoint": identity.get("rabbitmq_endpoint", ""),
    }


def dashboard_expressions(prometheus: Prometheus) -> dict[str, str]:
    """Every expression of every provisioned dashboard, its variables filled in, by where it is."""
    found = {}
    for file in DASHBOARDS:
        dashboard = json.loads(file.read_text())
        variables = overview_variables(prometheus) if file.stem == OVERVIEW else {}
        for index, written in enumerate(expressions(dashboard)):
            expression = written
            for name, value in sorted(variables.items(), key=lambda item: -len(item[0])):
                expression = expression.replace(name, value)
            assert not re.search(r"\$(?!\d)\w", expression), f"a variable left: {expression}"
            found[f"{file.stem} #{index}: {written}"] = expression
    return found


def container_addresses(name: str) -> list[str]:
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    return subprocess.check_output(
        ["docker", "inspect", "--format", template, name], text=True
    ).split()


def unserved(prometheus: Prometheus, *expressions: str) -> set[str]:
    """The broker metrics named in `expressions` of which Prometheus has no series at all."""
    # Label names (in selectors, and in on(...), group_left(...), by (...)) left out.
    bare = [re.sub(LABEL_LISTS, "", expression) for expression in expressions]
    named = {name for expression in bare for name in re.findall(r"\brabbitmq_\w+", expression)}
    names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in named}
    return {
        name
        for name in names
        if not prometheus.query(f'{{__name__=~"{name}(_bucket|_sum|_count)?"}}')
    }


def test_prometheus_scrapes_every_replica_and_every_dashboard_query_returns_data(
    stack: tuple[Compose, Prometheus],
) -> None:
    compose, prometheus = stack

    wanted = {"service_a": 1, "service_b": SCALE, "service_c": 1, "last": 1, "rabbitmq": 1}
    wanted["rabbitmq-detailed"] = 1

    def all_found() -> dict[str, int] | None:
        up = prometheus.targets_up()  # a first scrape of each target comes within 5 s or so
        return up if all(up.get(name) == n for name, n in wanted.items()) else None

    wait_for(all_found, TARGETS_TIMEOUT_S, f"every target up, {SCALE} of them service_b's")

    checked = compose("exec", "-T", "prometheus", "promtool", "check", "config",
                      "/etc/prometheus/prometheus.yml")  # fmt: skip
    assert "SUCCESS" in checked, checked

    victim = kill_a_busy_replica(compose, prometheus)

    waiting = dashboard_expressions(prometheus)
    ours = {key for key in waiting if key.startswith(PIPELINE_DASHBOARD.stem)}
    assert ours, "the pipeline's dashboard has no expression"
    newer: set[str] = set()  # RabbitMQ's Overview follows its latest release, not this broker's
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while set(waiting) - newer and time.monotonic() < deadline:
        waiting = {key: e for key, e in waiting.items() if not prometheus.query(e)}
        if not set(waiting) & ours:
            newer = {k for k in waiting if k.startswith(OVERVIEW) and unserved(prometheus, k)}
        time.sleep(QUERY_INTERVAL_S)
    if newer:
        [build] = prometheus.query('rabbitmq_build_info{job="rabbitmq"}')
        version = build["metric"]["rabbitmq_version"]
        warnings.warn(f"{len(newer)} of RabbitMQ's Overview's queries ask for metrics RabbitMQ "
                      f"{version} does not serve: {sorted(unserved(prometheus, *newer))}",
                      stacklevel=1)  # fmt: skip
    missing = sorted(set(waiting) - newer)
    assert not missing, "no data, during the whole run, for:\n" + "\n".join(missing)

    seen = wait_for_completions(compose, MESSAGES, f"last to complete {MESSAGES} messages")
    check_outcome(compose, MESSAGES, seen, killed={victim})

    # The completions Prometheus counted are last's, once its next scrape has seen the last ones.
    def counted() -> float:
        [total] = prometheus.query("sum(rabbithole_messages_completed_total)") or [None]
        return float(total["value"][1]) if total else 0.0

    wait_for(
        lambda: counted() >= MESSAGES, SCRAPE_TIMEOUT_S, "Prometheus to count every completion"
    )
    assert counted() == MESSAGES


def kill_a_busy_replica(compose: Compose, prometheus: Prometheus) -> str:
    """SIGKILL a service_b replica while every replica has messages in work: its target goes
    and the broker redelivers what it held. The container's name."""
    redelivered = 'sum(rabbitmq_global_messages_redelivered_total{job="rabbitmq"})'
    before = float(prometheus.query(redelivered)[0]["value"][1])
    busy = 'rabbithole_messages_in_progress{stage="service_b"} > 0'
    [working, *_] = wait_for(lambda: prometheus.query(busy), 90, "a service_b replica in work")
    address = working["metric"]["instance"].rsplit(":", 1)[0]
    [victim] = [
        c["Name"]
        for c in compose.containers()
        if c["Service"] == "service_b" and address in container_addresses(c["Name"])
    ]
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True, timeout=60)
    wait_for(
        lambda: prometheus.targets_up().get("service_b") == SCALE - 1,
        30,
        "the killed replica's target to go",
    )
    wait_for(
        lambda: float(prometheus.query(redelivered)[0]["value"][1]) > before,
        60,
        "the broker to count the killed replica's messages as redelivered",
    )
    return victim
