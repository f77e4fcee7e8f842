"""Grafana's provisioning files (observability/grafana), checked against Grafana's documented
schema without a Grafana: no Grafana image can be built here, so what it would reject at start-up
is checked here (https://grafana.com/docs/grafana/latest/administration/provisioning/ for the
data source and dashboard provider files, the dashboard JSON model for the dashboards).

The data source points at the profile's Prometheus service, the provider at the folder compose
mounts, and every dashboard is one Grafana loads: a uid, panels with ids and places on the grid,
queries with a refId and an expression, against the provisioned data source. The pipeline's
dashboard asks only for metrics the processes serve (tests/integration/
test_observability_compose.py evaluates every expression against a real Prometheus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from harness.processes import ROOT
from tests.unit.test_compose_observability import OBSERVABILITY, mounted_source, observed

GRAFANA = OBSERVABILITY / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
PROVIDERS = GRAFANA / "provisioning" / "dashboards"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PIPELINE_DASHBOARD = GRAFANA / "dashboards" / "rabbithole-pipeline.json"
RUNTIME = ("common", "first", "service", "last")  # where the processes' metrics are named
GRID_WIDTH = 24  # Grafana's grid has 24 columns
UID = re.compile(r"[A-Za-z0-9_-]{1,40}")  # Grafana's rule for uids
# The keys Grafana's provisioning documents for a data source and a dashboard provider.
DATASOURCE_KEYS = {
    "name", "type", "uid", "access", "orgId", "url", "user", "database", "basicAuth",
    "basicAuthUser", "withCredentials", "isDefault", "jsonData", "secureJsonData", "version",
    "editable",
}  # fmt: skip
PROVIDER_KEYS = {
    "name", "orgId", "folder", "folderUid", "type", "disableDeletion", "updateIntervalSeconds",
    "allowUiUpdates", "options",
}  # fmt: skip


def provisioning(folder: Path) -> list[dict]:
    files = sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml"))
    assert files, f"no provisioning file in {folder}"
    loaded = [yaml.safe_load(file.read_text()) for file in files]
    for document in loaded:
        assert document["apiVersion"] == 1
    return loaded


def datasources() -> list[dict]:
    return [source for document in provisioning(DATASOURCES) for source in document["datasources"]]


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]


@pytest.fixture(scope="module")
def grafana(compose_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The profile's grafana service as Compose resolves it."""
    return observed(compose_bin, tmp_path_factory.mktemp("compose"))["services"]["grafana"]


def test_the_data_source_is_the_profiles_prometheus(compose_bin: str, tmp_path: Path) -> None:
    [source] = datasources()
    assert set(source) <= DATASOURCE_KEYS, set(source) - DATASOURCE_KEYS
    assert (source["type"], source["access"], source["isDefault"]) == ("prometheus", "proxy", True)
    assert UID.fullmatch(source["uid"]) and source["name"]
    url = urlsplit(source["url"])
    prometheus = observed(compose_bin, tmp_path)["services"]["prometheus"]
    assert url.hostname == "prometheus"
    assert url.port in {port["target"] for port in prometheus["ports"]}
    scrape = yaml.safe_load((OBSERVABILITY / "prometheus" / "prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]


def test_the_dashboards_are_read_from_the_folder_compose_mounts(grafana: dict) -> None:
    [provider] = [p for document in provisioning(PROVIDERS) for p in document["providers"]]
    assert set(provider) <= PROVIDER_KEYS, set(provider) - PROVIDER_KEYS
    assert provider["type"] == "file" and provider["name"]
    path = provider["options"]["path"]
    assert mounted_source(grafana, path) == GRAFANA / "dashboards"
    assert mounted_source(grafana, "/etc/grafana/provisioning") == GRAFANA / "provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{PIPELINE_DASHBOARD.name}"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(file.read_text())["uid"] for file in DASHBOARDS]
    assert len(uids) == len(set(uids)) >= 2, uids  # the pipeline's and RabbitMQ's Overview


@pytest.mark.parametrize("file", DASHBOARDS, ids=[file.stem for file in DASHBOARDS])
def test_each_dashboard_is_one_grafana_loads(file: Path) -> None:
    dashboard = json.loads(file.read_text())
    assert UID.fullmatch(dashboard["uid"]) and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    [source] = datasources()
    variables = {
        f"${{{v['name']}}}"
        for v in dashboard.get("templating", {}).get("list", [])
        if v["type"] == "datasource" and v["query"] == "prometheus"
    }
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        place = panel.get("gridPos")  # optional: Grafana places a panel without one
        if place is not None:
            assert all(isinstance(place[k], int) for k in ("h", "w", "x", "y")), panel["title"]
            assert place["x"] + place["w"] <= GRID_WIDTH, panel["title"]
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), panel["title"]
            datasource = target.get("datasource") or panel["datasource"]
            assert datasource["type"] == "prometheus", panel["title"]
            assert datasource["uid"] in {source["uid"], *variables}, panel["title"]


def served_metrics() -> set[str]:
    """The metric names the runtime code gives prometheus_client."""
    names = set()
    for package in RUNTIME:
        for module in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"[\"'](rabbithole_\w+)[\"']", module.read_text()))
    return names


def test_the_pipeline_dashboard_asks_only_for_metrics_the_processes_serve() -> None:
    """A renamed metric breaks this (without Docker) and the compose run's evaluation."""
    asked = {
        name
        for expression in expressions(json.loads(PIPELINE_DASHBOARD.read_text()))
        for name in re.findall(r"\brabbithole_\w+", expression)
    }
    served = served_metrics()
    unknown = {
        name for name in asked if re.sub(r"_(total|bucket|sum|count)$", "", name) not in served
    }
    assert not unknown, f"the dashboard asks for metrics no process serves: {sorted(unknown)}"


def test_the_pipeline_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads(PIPELINE_DASHBOARD.read_text())
    asked = " ".join(expressions(dashboard))
    for metric in (
        "rabbithole_messages_handled_total",  # rate per stage
        "rabbitmq_detailed_queue_messages",  # queue depth per stage
        "rabbithole_messages_in_progress",  # per replica
        "rabbithole_handler_duration_seconds_bucket",
        "rabbithole_end_to_end_latency_seconds_bucket",
        "rabbithole_messages_dead_lettered_total",
        "rabbithole_messages_requeued_total",
        "rabbithole_reconnects_total",
    ):
        assert metric in asked, metric
    titles = {panel["title"] for panel in panels(dashboard)}
    assert {"A spike buffers and drains", "A scaled stage drains faster"} <= titles
