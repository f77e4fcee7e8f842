"""docker-compose.yml's `observability` profile and its Prometheus, checked without a Docker engine.

Compose itself resolves the files (`docker compose --profile observability config`), and the
model is checked against Prometheus's configuration: every pipeline process serves its metrics
on the port Prometheus's DNS discovery asks each compose service name for, every broker node of
both compose files runs rabbitmq_prometheus and is a target, pinned images, healthchecks and
loopback-only ports, and a broker console at warnings. tests/integration/
test_observability_compose.py runs it for real where Docker answers.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from harness.processes import ROOT
from tests.unit.commands import compose_1_29, output_of
from tests.unit.test_compose_cluster import CLUSTER_FILE, conf_lines
from tests.unit.test_compose_file import (
    APP_SERVICES,
    BROKER,
    COMPOSE_FILE,
    PROVISION,
    STORE,
    TOPOLOGY,
    compose_model,
)

PROFILE = "observability"
ADDED = {"prometheus": {9090}, "grafana": {3000}, "jaeger": {16686, 4318}}  # container ports
OBSERVABILITY = ROOT / "observability"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
PLUGINS_FILE = ROOT / "rabbitmq" / "enabled_plugins"
CONSOLE_LOG_CONF = ROOT / "rabbitmq" / "30-console-log.conf"
RABBITMQ_METRICS_PORT = 15692  # rabbitmq_prometheus's port


def observed(compose_bin: str, directory: Path, settings: str = "", *files: Path) -> dict:
    options = [arg for file in files for arg in ("-f", str(file))]
    return compose_model(compose_bin, directory, settings, *options, "--profile", PROFILE)


@pytest.fixture
def one_node(compose_bin: str, tmp_path: Path) -> dict:
    return observed(compose_bin, tmp_path)


@pytest.fixture
def cluster(compose_bin: str, tmp_path: Path) -> dict:
    return observed(compose_bin, tmp_path, "", CLUSTER_FILE)


def prometheus_config() -> dict:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text())


def job(name: str) -> dict:
    [found] = [job for job in prometheus_config()["scrape_configs"] if job["job_name"] == name]
    return found


def broker_nodes(model: dict) -> list[str]:
    """The model's RabbitMQ nodes: the services running the broker's image."""
    image = model["services"][BROKER]["image"]
    return sorted(name for name, s in model["services"].items() if s.get("image") == image)


def mounts(service: dict) -> dict[str, dict]:
    """A service's bind mounts by their target in the container."""
    return {v["target"]: v for v in service.get("volumes", []) if v["type"] == "bind"}


def mounted_source(service: dict, target: str) -> Path:
    """The file of this repository mounted read-only at `target`."""
    mount = mounts(service)[target]
    assert mount.get("read_only") is True, mount
    return Path(mount["source"])


def test_the_profile_adds_prometheus_grafana_and_jaeger_and_nothing_else(
    one_node: dict, compose_bin: str, tmp_path: Path
) -> None:
    services = one_node["services"]
    assert set(services) == {PROVISION, TOPOLOGY, BROKER, STORE, *APP_SERVICES, *ADDED}
    for name in ADDED:
        assert services[name]["profiles"] == [PROFILE], name
    plain = compose_model(compose_bin, tmp_path)["services"]  # `docker compose up` as before
    assert not set(ADDED) & set(plain)


def test_images_are_pinned_ports_on_loopback_and_every_service_has_a_healthcheck(
    one_node: dict,
) -> None:
    services = one_node["services"]
    for name, ports in ADDED.items():
        service = services[name]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), service["image"]
        published = {p["target"]: p.get("host_ip") for p in service["ports"]}
        assert published == dict.fromkeys(ports, "127.0.0.1"), name
        healthcheck = service["healthcheck"]
        assert not healthcheck.get("disable") and healthcheck["test"][0] in ("CMD", "CMD-SHELL")
        assert "localhost:" in " ".join(healthcheck["test"]), name
        assert service["restart"] == "unless-stopped", name
    # Prometheus 2's flags and UI (3.x differ; the stand-in image here is 2.42).
    assert services["prometheus"]["image"].startswith("prom/prometheus:v2.")
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_prometheus_finds_every_replica_of_every_process_by_its_service_name(
    one_node: dict,
) -> None:
    """DNS discovery on each compose service name: Docker answers with every container of the
    service, so a `--scale service_b=3` is three targets, not one load-balanced address."""
    services = one_node["services"]
    serving = {
        name: int(s["environment"]["METRICS_PORT"])
        for name, s in services.items()
        if (s.get("environment") or {}).get("METRICS_PORT")
    }
    assert set(serving) == set(APP_SERVICES)
    [discovery] = job("pipeline")["dns_sd_configs"]
    assert discovery["type"] == "A"
    assert sorted(discovery["names"]) == sorted(serving)
    assert set(serving.values()) == {discovery["port"]}
    for name in serving:  # a scaled service cannot publish a fixed host port
        assert not services[name].get("ports"), name
    relabel = job("pipeline")["relabel_configs"]
    assert {"source_labels": ["__meta_dns_name"], "target_label": "service"} in relabel


def test_prometheus_reads_the_config_it_is_given_and_logs_warnings_only(one_node: dict) -> None:
    prometheus = one_node["services"]["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in prometheus["command"])
    assert mounted_source(prometheus, flags["config.file"]) == PROMETHEUS_CONFIG
    assert flags["log.level"] == "warn"
    assert flags["storage.tsdb.path"] == "/prometheus"


@pytest.mark.parametrize("files", [(), (CLUSTER_FILE,)], ids=["one node", "cluster"])
def test_every_broker_node_is_scraped_whole_and_per_queue(
    compose_bin: str, tmp_path: Path, files: tuple[Path, ...]
) -> None:
    model = observed(compose_bin, tmp_path, "", *files)
    prometheus = model["services"]["prometheus"]
    nodes = broker_nodes(model)
    assert len(nodes) == (3 if files else 1)
    for name in ("rabbitmq", "rabbitmq-detailed"):
        [discovery] = job(name)["file_sd_configs"]
        [pattern] = discovery["files"]
        found = [t for t in mounts(prometheus) if fnmatch.fnmatch(t, pattern)]
        assert len(found) == 1, (name, found)
        groups = yaml.safe_load(mounted_source(prometheus, found[0]).read_text())
        targets = [target for group in groups for target in group["targets"]]
        assert sorted(targets) == sorted(f"{node}:{RABBITMQ_METRICS_PORT}" for node in nodes)
    detailed = job("rabbitmq-detailed")
    assert detailed["metrics_path"] == "/metrics/detailed"
    assert "queue_coarse_metrics" in detailed["params"]["family"]  # the depth of every queue


@pytest.mark.parametrize("files", [(), (CLUSTER_FILE,)], ids=["one node", "cluster"])
def test_every_node_runs_rabbitmq_prometheus_with_its_console_at_warnings(
    compose_bin: str, tmp_path: Path, files: tuple[Path, ...]
) -> None:
    model = observed(compose_bin, tmp_path, "", *files)
    for name in broker_nodes(model):
        node = model["services"][name]
        assert mounted_source(node, "/etc/rabbitmq/enabled_plugins") == PLUGINS_FILE, name
        conf = f"/etc/rabbitmq/conf.d/{CONSOLE_LOG_CONF.name}"
        assert mounted_source(node, conf) == CONSOLE_LOG_CONF, name
    text = re.sub(r"%.*", "", PLUGINS_FILE.read_text())  # Erlang comments
    plugins = re.fullmatch(r"\s*\[([\w,\s]*)\]\.\s*", text)
    assert plugins, "enabled_plugins must be one Erlang list of plugin names, ending with a dot"
    names = {name.strip() for name in plugins.group(1).split(",")}
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= names
    settings = conf_lines(CONSOLE_LOG_CONF)
    assert (settings["log.console"], settings["log.console.level"]) == ("true", "warning")


def test_traces_go_to_jaeger_only_when_asked_for(compose_bin: str, tmp_path: Path) -> None:
    endpoint = "http://jaeger:4318"  # Jaeger's OTLP/HTTP receiver, inside the compose network
    asked = observed(compose_bin, tmp_path, f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}\n")
    for name in APP_SERVICES:
        assert asked["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    assert 4318 in ADDED["jaeger"]
    # Not asked for: passed on without a value, which Compose leaves unset in the container.
    assert re.search(r"^  OTEL_EXPORTER_OTLP_ENDPOINT:\s*$", COMPOSE_FILE.read_text(), re.M)


@pytest.mark.parametrize("files", [(), (CLUSTER_FILE,)], ids=["one node", "cluster"])
def test_the_profile_works_with_compose_1_29(files: tuple[Path, ...]) -> None:
    options = [arg for file in (COMPOSE_FILE, *files) for arg in ("-f", str(file))]
    output_of([compose_1_29(), *options, "--profile", PROFILE, "config", "--quiet"])
