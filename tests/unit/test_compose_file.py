"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is resolved by the real Compose implementation (`docker compose config`, the
binary `make compose-bin` installs), and the resolved model is checked: healthy start order, a
single locally built image, loopback-only ports. Then the wiring is run for real: each service's
resolved `command` and `environment` start a local process against the test broker, so a wrong
queue name, next queue or command fails the test just as it would break `docker compose up`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness import deployment
from harness.processes import ROOT
from tests.unit.commands import compose_1_29, output_of

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
BROKER = "rabbitmq"
STORE = "store"  # last's store of completed records (Redis)
PROVISION = "provision"  # makes the secrets at the first start (python -m provision)
TOPOLOGY = "topology"  # declares the queues as the operator (python -m provision.topology)
APP_SERVICES = tuple(deployment.BROKER)  # first, service_a, service_b, service_c, last
CONSUMERS = deployment.CONSUMES  # service -> the queue it must consume
DRAIN_TIMEOUT = 20.0  # the consumers' default (common.consumer.ConsumerSettings)


# -- running docker compose --------------------------------------------------------------------


def compose_config(compose_bin: str, env_file: Path, *options: str) -> dict:
    """The model `docker compose config` resolves, with `env_file` in place of a .env file.

    Variables the compose file interpolates are removed from the environment Compose sees (a
    shell's value would win over the env file), as are Compose's own COMPOSE_* settings.
    """
    interpolated = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in interpolated and not name.startswith("COMPOSE_")
    }
    command = [compose_bin, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *options]
    return json.loads(output_of([*command, "config", "--format", "json"], env=env))


def compose_model(compose_bin: str, directory: Path, settings: str = "", *options: str) -> dict:
    """The model `docker compose config` resolves with an env file of `settings` alone."""
    env_file = directory / "compose.env"
    env_file.write_text(settings)
    return compose_config(compose_bin, env_file, *options)


def image_sources(dockerfile: str) -> list[str]:
    """What a Dockerfile (or stage)'s COPY lines take, once it is checked to run as a user of
    its own, not root."""
    [user] = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert user not in ("root", "0", "0:0")
    return [
        source
        for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M)
        for source in line.split()[:-1]
        if not source.startswith("--")
    ]


def import_in_image(sources: Sequence[str], app: Path, code: str) -> None:
    """Run `python -c code` in `app`, which holds only the Dockerfile's COPY `sources`, with
    nothing of this machine's environment but PATH: what the image's Python can import."""
    for source in sources:
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, app / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (app / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, app / source)
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONDONTWRITEBYTECODE": "1"}
    output_of([sys.executable, "-c", code], cwd=app, env=env)


@pytest.fixture
def defaults(compose_bin: str, tmp_path: Path) -> dict:
    """The model with nothing set: what `docker compose up` uses out of the box."""
    return compose_model(compose_bin, tmp_path)


def seconds(duration: str) -> float:
    """A Compose duration such as '30s', '1m30s' or '500ms', in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"([0-9.]+)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


# -- the resolved model ----------------------------------------------------------------------


def test_compose_file_has_no_version_key_nor_container_names() -> None:
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"^version\s*:", text, re.MULTILINE), "`version` is obsolete"
    assert "container_name" not in text, "fixed container names prevent --scale"


def test_services_start_after_a_healthy_broker(defaults: dict) -> None:
    services = defaults["services"]
    assert set(services) == {PROVISION, TOPOLOGY, BROKER, STORE, *APP_SERVICES}
    broker = services[BROKER]
    done = "service_completed_successfully"
    assert broker["depends_on"][PROVISION]["condition"] == done
    assert services[TOPOLOGY]["depends_on"][BROKER]["condition"] == "service_healthy"
    for name in APP_SERVICES:  # the queues exist before any app starts
        assert services[name]["depends_on"][TOPOLOGY]["condition"] == done, name
    healthcheck = broker.get("healthcheck", {})
    assert not healthcheck.get("disable"), healthcheck
    assert healthcheck.get("test", [])[:2] == ["CMD", "rabbitmq-diagnostics"], healthcheck
    for name in APP_SERVICES:
        depends_on = services[name].get("depends_on", {})
        assert depends_on.get(BROKER, {}).get("condition") == "service_healthy", name
    for name, service in services.items():
        assert "container_name" not in service, name


def test_last_starts_after_a_healthy_store_that_keeps_what_it_confirmed(defaults: dict) -> None:
    services = defaults["services"]
    store = services[STORE]
    assert re.fullmatch(r"redis:7(\.\d+)*(-alpine)?", store["image"])
    command = " ".join(store["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync always" in command  # fsync before each answer: nothing confirmed lost
    volumes = [v for v in store.get("volumes", []) if v["target"] == "/data"]
    assert [v["type"] for v in volumes] == ["volume"]
    assert volumes[0]["source"] in defaults["volumes"]
    assert "--user health" in " ".join(store["healthcheck"]["test"])  # the default user is off
    assert "--aclfile /run/secrets/store/users.acl" in command
    assert store["restart"] == "unless-stopped"
    last = services["last"]
    assert last["depends_on"][STORE]["condition"] == "service_healthy"
    assert last["environment"]["STORE_URL"] == f"rediss://last@{STORE}:6379/0"  # its ACL user


def test_the_store_speaks_tls_alone_with_its_own_certificate(defaults: dict) -> None:
    services = defaults["services"]
    store = services[STORE]
    options = dict(zip(store["command"][1::2], store["command"][2::2], strict=False))
    assert options["--port"] == "0"  # no plain port
    assert options["--tls-port"] == "6379"
    mounts = {v["target"]: v["source"] for v in store["volumes"]}
    assert mounts["/run/secrets/tls"] == "tls-store"
    for option, file in (("--tls-cert-file", "cert"), ("--tls-key-file", "key")):
        assert options[option] == f"/run/secrets/tls/{file}.pem"
    assert options["--tls-auth-clients"] == "no"  # clients log in with a password
    assert "--tls --cacert /run/secrets/tls/ca.pem" in " ".join(store["healthcheck"]["test"])
    assert services["last"]["environment"]["STORE_CA_FILE"] == "/run/secrets/rabbithole/ca.pem"


def test_every_broker_client_speaks_tls_and_trusts_the_deployments_ca(
    compose_bin: str, tmp_path: Path
) -> None:
    """amqps:// to 5671 for every process that logs in (the apps, the operator's step, the
    tools), the CA beside its own password; the broker listens on TLS alone."""
    services = compose_model(compose_bin, tmp_path, "", "--profile", "tools")["services"]
    clients = [name for name, s in services.items() if "AMQP_URL" in (s.get("environment") or {})]
    assert set(clients) == {*APP_SERVICES, TOPOLOGY, "watch"}
    for name in clients:
        environment = services[name]["environment"]
        assert re.fullmatch(r"amqps://\w+@rabbitmq:5671/%2F", environment["AMQP_URL"]), name
        assert environment["AMQP_CA_FILE"] == "/run/secrets/rabbithole/ca.pem", name
    broker = services[BROKER]
    mounts = {v["target"]: v["source"] for v in broker["volumes"]}
    assert mounts["/etc/rabbitmq/tls"] == "tls-rabbitmq"
    assert mounts["/etc/rabbitmq/conf.d/40-tls.conf"].endswith("rabbitmq/40-tls.conf")
    conf = (ROOT / "rabbitmq" / "40-tls.conf").read_text().splitlines()
    assert "listeners.tcp = none" in conf and "listeners.ssl.default = 5671" in conf


def test_broker_is_the_official_management_image_seeded_with_its_users(defaults: dict) -> None:
    """No default user (so no guest, no second administrator): the definitions `provision`
    wrote, imported at boot, are the broker's only users."""
    broker = defaults["services"][BROKER]
    assert re.fullmatch(r"rabbitmq:\d+\.\d+(\.\d+)?-management(-alpine)?", broker["image"])
    assert not any(name.startswith("RABBITMQ_DEFAULT") for name in broker.get("environment") or {})
    mounts = {v["target"]: v for v in broker.get("volumes", [])}
    assert mounts["/var/lib/rabbitmq"]["type"] == "volume"
    assert mounts["/var/lib/rabbitmq"]["source"] in defaults["volumes"]
    assert mounts["/etc/rabbitmq/secrets"]["source"] == "secrets-broker"
    assert mounts["/etc/rabbitmq/secrets"].get("read_only") is True
    conf = (ROOT / "rabbitmq" / "10-definitions.conf").read_text()
    assert "definitions.local.path = /etc/rabbitmq/secrets/definitions.json" in conf
    assert mounts["/etc/rabbitmq/conf.d/10-definitions.conf"]["source"].endswith(
        "rabbitmq/10-definitions.conf"
    )


def test_each_process_reads_its_own_secret_and_no_other(defaults: dict) -> None:
    """A secret volume per reader: `provision` mounts them all, each app its own; no password
    is in any service's environment (so in no `docker inspect`)."""
    services = defaults["services"]
    secret_volumes = {name for name in defaults["volumes"] if name.startswith("secrets-")}
    mounted = {
        name: {v["source"] for v in service.get("volumes", []) if v["source"] in secret_volumes}
        for name, service in services.items()
    }
    assert mounted.pop(PROVISION) == secret_volumes  # the CA's key in secrets-ca: only here
    assert mounted.pop(BROKER) == {"secrets-broker"}
    assert mounted.pop(TOPOLOGY) == {"secrets-admin"}  # the operator's step
    assert mounted.pop(STORE) == {"secrets-store"}
    assert {name: volumes for name, volumes in mounted.items() if volumes} == {
        name: {f"secrets-{name}"} for name in APP_SERVICES
    }
    readers = (*APP_SERVICES, "broker", "store", "monitor", "admin", "ca")
    assert secret_volumes == {f"secrets-{name}" for name in readers}
    # Each server's certificate and key: provision writes them, the server alone mounts them.
    tls_volumes = {name for name in defaults["volumes"] if name.startswith("tls-")}
    assert tls_volumes == {f"tls-{BROKER}", f"tls-{STORE}"}
    for volume in tls_volumes:
        users = {
            n for n, s in services.items() for v in s.get("volumes", []) if v["source"] == volume
        }
        assert users == {PROVISION, volume.removeprefix("tls-")}, volume
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if variable.endswith("_URL") and value:
                assert "@" not in value or ":" not in value.split("@")[0].split("//")[-1], (
                    f"{name}: {variable} carries a password"
                )
    for name in APP_SERVICES:
        assert services[name]["environment"]["DECLARE_QUEUES"] == "own", name


def test_ports_are_published_on_loopback_only(defaults: dict) -> None:
    published = {
        (name, port["target"]): port.get("host_ip")
        for name, service in defaults["services"].items()
        for port in service.get("ports", [])
    }
    assert published == {
        (BROKER, 5671): "127.0.0.1",  # AMQP over TLS: the broker has no plain port
        (BROKER, 15672): "127.0.0.1",
        (STORE, 6379): "127.0.0.1",
    }


def test_app_services_share_one_image_built_once(defaults: dict) -> None:
    services = defaults["services"]
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1 and None not in images, images
    built = [name for name, service in services.items() if "build" in service]
    assert len(built) == 1, f"one build definition, not {built}"
    assert services[built[0]]["image"] in images
    assert services[built[0]]["build"]["context"] == str(ROOT)
    for name in APP_SERVICES:
        # No registry holds the local image: pulling it could only fetch a stranger's.
        assert services[name].get("pull_policy") in ("never", "build"), name


def test_app_services_run_their_module_in_exec_form(defaults: dict) -> None:
    services = defaults["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service.get("init") is True, name
        command = service.get("command")
        assert command == ["python", "-m", deployment.BROKER[name].module], name
        assert not service.get("entrypoint"), name


def test_restart_and_stop_policies(defaults: dict) -> None:
    services = defaults["services"]
    assert services["first"]["restart"] == "no"  # it exits 0 once everything is confirmed
    for name in CONSUMERS:
        assert services[name]["restart"] == "unless-stopped", name
        # Docker's SIGKILL must come after the consumer has had its drain time.
        assert seconds(services[name]["stop_grace_period"]) > DRAIN_TIMEOUT, name


def test_env_example_documents_the_defaults(compose_bin: str, defaults: dict) -> None:
    assert compose_config(compose_bin, ENV_EXAMPLE) == defaults
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    interpolated = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    assert interpolated <= documented


# -- the image ---------------------------------------------------------------------------------


def test_image_holds_what_the_commands_run(defaults: dict, tmp_path: Path) -> None:
    """The runtime stage's COPY sources alone are enough to import every service's module."""
    dockerfile = stages()["runtime"]
    assert re.search(r"^FROM python:3\.\d+-slim AS runtime$", dockerfile, re.M)
    sources = image_sources(dockerfile)
    assert "requirements.txt" in sources
    for source in sources:
        assert not source.startswith(("tests", ".", "tools", "harness", "bench")), source
    modules = {defaults["services"][name]["command"][2] for name in APP_SERVICES}
    # The one-shot steps before them run from the same image (their entrypoint names the module).
    modules |= {defaults["services"][name]["entrypoint"][2] for name in (PROVISION, TOPOLOGY)}
    modules = sorted(module.removesuffix(".topology") for module in modules)
    import_in_image(sources, tmp_path / "app", "; ".join(f"import {m}.__main__" for m in modules))


def stages() -> dict[str, str]:
    """The Dockerfile's stages by name (the unnamed last one as "default")."""
    found = {}
    for block in re.split(r"^(?=FROM )", DOCKERFILE.read_text(), flags=re.M)[1:]:
        name = re.match(r"FROM \S+(?: AS (\S+))?", block)
        found[name.group(1) or "default"] = block
    return found


def test_the_default_target_is_the_runtime_and_the_tools_run_as_the_app_user() -> None:
    found = stages()
    assert found["default"].strip() == "FROM runtime"
    assert found["tools"].startswith("FROM runtime AS tools")
    users = re.findall(r"^USER\s+(\S+)", found["tools"], re.M)
    assert users[-1] == "app", users
    assert "COPY tools/ tools/" in found["tools"]


def test_the_tools_profile_builds_its_own_image(compose_bin: str, tmp_path: Path) -> None:
    services = compose_model(compose_bin, tmp_path, "", "--profile", "tools")["services"]
    assert {"watch", "report"} <= set(services)
    for name in ("watch", "report"):
        assert services[name]["build"]["target"] == "tools", name
        assert services[name]["image"] != services["first"]["image"], name
    assert services["first"]["build"]["target"] == "runtime"
    assert services["watch"]["command"] == ["python", "-m", "tools.watch"]
    assert services["report"]["command"][:3] == ["python", "-m", "tools.report"]
    assert [v["target"] for v in services["report"]["volumes"]] == ["/out"]


def test_compose_file_works_with_compose_1_29() -> None:
    """Debian's and Ubuntu's `apt install docker-compose` give 1.29, which rejects a top-level
    `name:`; it must be able to read the file as v2 does."""
    assert not re.search(r"^name\s*:", COMPOSE_FILE.read_text(), re.M)
    legacy = compose_1_29()
    for profile in ([], ["--profile", "tools"]):
        output_of([legacy, "-f", str(COMPOSE_FILE), *profile, "config", "--quiet"])


def test_build_context_leaves_out_local_files() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "tests"} <= ignored


# -- the wiring, run for real ----------------------------------------------------------------
