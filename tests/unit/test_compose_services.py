"""docker-compose.yml runs the processes `harness.deployment` describes, and no others: the same
names, modules, wiring, demo pace and replicas, as Compose itself resolves the file (both
pipelines: the broker one and, in the `http` profile, the HTTP one)."""

from __future__ import annotations

import pytest

from common.topology import PIPELINE_QUEUES, SINK_QUEUE, STAGES
from harness.deployment import BROKER, CONSUMES, HTTP, Process, http_env, twin
from tests.unit.test_compose_file import BROKER as BROKER_SERVICE
from tests.unit.test_compose_file import PROVISION, STORE, TOPOLOGY, compose_model

HTTP_PORT = 8000  # every HTTP server of the compose file listens on it, at its service's name
DESCRIBED = {**BROKER, **HTTP}
# The variables that wire a process into its pipeline: the compose file may set them only as
# the description says.
WIRING = {key for process in DESCRIBED.values() for key in process.env} | {"HTTP_BIND", "NEXT_URL"}


@pytest.fixture(scope="module")
def services(compose_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every service of both pipelines, with nothing else set (resolved once: it only reads)."""
    directory = tmp_path_factory.mktemp("compose")
    return compose_model(compose_bin, directory, "COMPOSE_PROFILES=http\n")["services"]


def expected_env(process: Process) -> dict[str, str]:
    """The description's environment for `process` as the compose file must resolve it."""
    if process.name in HTTP:
        wiring = http_env(process, lambda name: f"{name}:{HTTP_PORT}", f"0.0.0.0:{HTTP_PORT}")
    else:
        wiring = dict(process.env)
    return {**wiring, **process.demo_env}


def test_the_compose_file_runs_the_described_processes_and_no_others(services: dict) -> None:
    assert set(services) - {PROVISION, TOPOLOGY, BROKER_SERVICE, STORE} == set(DESCRIBED)


@pytest.mark.parametrize("name", list(DESCRIBED))
def test_each_service_runs_its_module_wired_paced_and_replicated_as_described(
    services: dict, name: str
) -> None:
    process, service = DESCRIBED[name], services[name]
    assert service["command"] == ["python", "-m", process.module]
    environment = service.get("environment") or {}
    expected = expected_env(process)
    assert {key: environment.get(key) for key in expected} == expected
    wired = {key: value for key, value in environment.items() if key in WIRING}
    assert wired == {key: value for key, value in expected.items() if key in WIRING}
    replicas = service.get("scale") or service.get("deploy", {}).get("replicas") or 1
    assert replicas == process.replicas


def test_the_broker_pipeline_passes_every_queue_in_order() -> None:
    """first publishes to the first stage, each stage to the queue after its own, and every
    queue of the pipeline has its consumer."""
    assert list(CONSUMES.values()) == list(PIPELINE_QUEUES)
    hops = [BROKER["first"].env["RABBITMQ_NEXT_QUEUE"]]
    hops += [BROKER[stage].env["RABBITMQ_NEXT_QUEUE"] for stage in STAGES]
    assert hops == list(PIPELINE_QUEUES)
    assert CONSUMES["last"] == SINK_QUEUE


def test_the_http_pipeline_stands_for_the_broker_one_process_for_process() -> None:
    assert list(HTTP) == [twin(name) for name in BROKER]
    for name, process in BROKER.items():
        assert HTTP[twin(name)].role == process.role, name
    chain = [HTTP[twin("first")].calls]
    chain += [HTTP[twin(stage)].calls for stage in STAGES]
    assert chain == [twin(name) for name in CONSUMES]
    assert [HTTP[twin(stage)].env["STAGE"] for stage in STAGES] == list(STAGES)
    assert [name for name, process in HTTP.items() if process.serves] == chain
