"""docker-compose.yml's `http` profile (the HTTP pipeline beside the broker one), checked by
Compose itself without a Docker engine: the chain's wiring, healthy start order, one image of
its own built once, loopback-only ports, and an image that holds what the commands run."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.topology import STAGES
from harness.deployment import HTTP, twin
from harness.processes import ROOT
from http_pipeline.settings import port_of
from tests.unit.test_compose_file import (
    APP_SERVICES,
    BROKER,
    PROVISION,
    STORE,
    TOPOLOGY,
    compose_model,
    image_sources,
    import_in_image,
)

DOCKERFILE = ROOT / "Dockerfile.http"
STAGE_SERVICES = {stage: twin(stage) for stage in STAGES}
SERVERS = (*STAGE_SERVICES.values(), twin("last"))
HTTP_SERVICES = tuple(HTTP)  # http_first and the servers


@pytest.fixture
def http_profile(compose_bin: str, tmp_path: Path) -> dict:
    return compose_model(compose_bin, tmp_path, "COMPOSE_PROFILES=http\n")


def test_the_profile_adds_the_http_pipeline_beside_the_broker_one(http_profile: dict) -> None:
    assert set(http_profile["services"]) == {
        PROVISION,
        TOPOLOGY,
        BROKER,
        STORE,
        *APP_SERVICES,
        *HTTP_SERVICES,
    }
    for name in HTTP_SERVICES:
        assert http_profile["services"][name]["profiles"] == ["http"], name


def test_each_stage_calls_the_next_one_in_order(http_profile: dict) -> None:
    services = http_profile["services"]
    chain = [services["http_first"]["environment"]["NEXT_URL"]]
    for stage, name in STAGE_SERVICES.items():
        environment = services[name]["environment"]
        assert environment["STAGE"] == stage
        chain.append(environment["NEXT_URL"])
    targets = [*STAGE_SERVICES.values(), "http_last"]
    assert chain == [f"http://{name}:8000/messages" for name in targets]
    for name in SERVERS:  # each listens where its caller calls it, on every interface
        assert port_of(services[name]["environment"]["HTTP_BIND"]) == 8000, name
        assert services[name]["environment"]["HTTP_BIND"].startswith("0.0.0.0:"), name


def test_start_order_follows_healthchecks_from_the_end_of_the_chain(http_profile: dict) -> None:
    services = http_profile["services"]
    callers = ["http_first", *SERVERS[:-1]]
    for caller, callee in zip(callers, SERVERS, strict=True):
        depends_on = services[caller]["depends_on"]
        assert set(depends_on) == {callee}, f"{caller} depends on {set(depends_on)}"
        assert depends_on[callee]["condition"] == "service_healthy", caller
    for name in SERVERS:
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "http_pipeline.health"], name
        assert services[name]["restart"] == "unless-stopped"
    assert services["http_first"]["restart"] == "no"


def test_one_image_of_its_own_built_once_and_loopback_ports(http_profile: dict) -> None:
    services = http_profile["services"]
    images = {services[name]["image"] for name in HTTP_SERVICES}
    assert len(images) == 1 and images != {services["first"]["image"]}
    built = [name for name in HTTP_SERVICES if "build" in services[name]]
    assert len(built) == 1
    assert services[built[0]]["build"]["dockerfile"] == "Dockerfile.http"
    for name in HTTP_SERVICES:
        assert services[name]["pull_policy"] in ("never", "build"), name
        assert services[name]["init"] is True, name
        for port in services[name].get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name


def test_the_image_holds_what_the_commands_run(http_profile: dict, tmp_path: Path) -> None:
    sources = image_sources(DOCKERFILE.read_text())
    assert "requirements-http.txt" in sources
    modules = {http_profile["services"][name]["command"][2] for name in HTTP_SERVICES}
    assert modules == {"http_pipeline.first", "http_pipeline.service", "http_pipeline.last"}
    imports = "; ".join(f"import {module}" for module in sorted(modules))
    import_in_image(sources, tmp_path / "app", imports + "; import http_pipeline.health")
