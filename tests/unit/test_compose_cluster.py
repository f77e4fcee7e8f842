"""docker-compose.cluster.yml over docker-compose.yml, checked without a Docker engine.

Compose itself resolves the two files (`docker compose -f docker-compose.yml -f
docker-compose.cluster.yml config`), and the model is checked: three nodes of the one pinned
image, each with its own host name (its node name) and data volume, one cookie, the cluster
settings mounted into each, and apps that wait for all three and know all three. `make
cluster-demo` runs it for real with Docker (harness/cluster_demo.py); the private cluster of the
fault tests uses the same settings (`harness.private_cluster.cluster_config`).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.private_cluster import cluster_config
from harness.processes import ROOT
from tests.unit.test_compose_file import APP_SERVICES, BROKER, ENV_EXAMPLE, compose_config

CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
CLUSTER_CONF = ROOT / "rabbitmq" / "20-cluster.conf"
NODES = (BROKER, "rabbitmq-2", "rabbitmq-3")
DATA = "/var/lib/rabbitmq"


def cluster_model(compose_bin: str, env_file: Path) -> dict:
    return compose_config(compose_bin, env_file, "-f", str(CLUSTER_FILE))


@pytest.fixture
def empty_env(tmp_path: Path) -> Path:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return empty


@pytest.fixture
def cluster(compose_bin: str, empty_env: Path) -> dict:
    """The cluster demo's model with nothing set."""
    return cluster_model(compose_bin, empty_env)


def conf_lines(path: Path) -> dict[str, str]:
    """`key = value` lines of a rabbitmq.conf file, comments left out."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def test_three_nodes_of_one_image_each_with_a_name_and_data_of_its_own(
    compose_bin: str, empty_env: Path, cluster: dict
) -> None:
    services = cluster["services"]
    one_node_services = compose_config(compose_bin, empty_env)["services"]
    assert set(services) == {*one_node_services, *NODES}  # the one-node demo, two nodes more
    one_node = one_node_services[BROKER]
    volumes = []
    for name in NODES:
        node = services[name]
        assert node["image"] == one_node["image"], name
        assert node["hostname"] == name  # the node is rabbit@<hostname>, kept across restarts
        [data] = [v for v in node["volumes"] if v["target"] == DATA]
        assert data["type"] == "volume", name
        volumes.append(data["source"])
        [conf] = [
            v for v in node["volumes"] if v["target"] == f"/etc/rabbitmq/conf.d/{CLUSTER_CONF.name}"
        ]
        assert (conf["type"], conf.get("read_only")) == ("bind", True), name
        assert Path(conf["source"]) == CLUSTER_CONF, name
        assert node["healthcheck"]["test"] == one_node["healthcheck"]["test"], name
        assert node["restart"] == "unless-stopped", name
        # Whichever node forms the cluster imports the users: none makes a default one.
        environment = node.get("environment") or {}
        assert not any(key.startswith("RABBITMQ_DEFAULT") for key in environment), name
        mounts = {v["target"]: v["source"] for v in node["volumes"]}
        assert mounts["/etc/rabbitmq/secrets"] == "secrets-broker", name
        assert mounts["/etc/rabbitmq/conf.d/10-definitions.conf"].endswith("10-definitions.conf")
    [one_node_data] = [v["source"] for v in one_node["volumes"] if v["target"] == DATA]
    # A volume per node, none of them the one-node demo's: the two never meet each other's data.
    assert len(set(volumes)) == len(NODES) and one_node_data not in volumes
    assert set(volumes) <= set(cluster["volumes"])


def test_the_nodes_share_the_cookie_provision_made_or_the_env_files(
    compose_bin: str, cluster: dict, tmp_path: Path
) -> None:
    """No cookie in the file, nor in any node's environment: provision makes it into a volume
    only the nodes (and provision) mount, and each node puts it in place before it starts."""
    services = cluster["services"]
    mounted = {
        name for name, service in services.items()
        for volume in service.get("volumes", []) if volume["source"] == "secrets-cookie"
    }  # fmt: skip
    assert mounted == {"provision", *NODES}
    for name in NODES:
        node = services[name]
        assert "RABBITMQ_ERLANG_COOKIE" not in (node.get("environment") or {}), name
        assert node["entrypoint"][:2] == ["sh", "-c"], name
        assert "/var/lib/rabbitmq/.erlang.cookie" in node["entrypoint"][2], name
        assert node["command"] == ["rabbitmq-server"], name
        assert node["depends_on"]["provision"]["condition"] == "service_completed_successfully"
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_ERLANG_COOKIE=a-cookie-of-our-own\n")
    services = cluster_model(compose_bin, env_file)["services"]
    assert services["provision"]["environment"]["RABBITMQ_ERLANG_COOKIE"] == "a-cookie-of-our-own"


def test_peer_discovery_names_every_node_and_leaders_are_spread(cluster: dict) -> None:
    conf = conf_lines(CLUSTER_CONF)
    backend = "rabbit_peer_discovery_classic_config"
    assert conf.pop("cluster_formation.peer_discovery_backend") == backend
    listed = {
        conf.pop(key)
        for key in list(conf)
        if key.startswith("cluster_formation.classic_config.nodes.")
    }
    assert listed == {f"rabbit@{cluster['services'][name]['hostname']}" for name in NODES}
    assert conf == {
        "queue_leader_locator": "balanced",
        "cluster_partition_handling": "autoheal",  # after a split, the losers restart and rejoin
    }
    # The tests' private cluster is set up the same way.
    private = dict(line.split(" = ") for line in cluster_config(["a", "b", "c"]))
    assert {re.sub(r"\.\d+$", "", key) for key in private} == {
        re.sub(r"\.\d+$", "", key) for key in conf_lines(CLUSTER_CONF)
    }


def test_the_apps_know_every_node_and_wait_for_all_of_them(cluster: dict) -> None:
    services = cluster["services"]
    for name in APP_SERVICES:
        service = services[name]
        for node in NODES:
            assert service["depends_on"][node]["condition"] == "service_healthy", (name, node)
        urls = [urlsplit(url) for url in service["environment"]["AMQP_URL"].split(",")]
        assert [url.hostname for url in urls] == list(NODES), name
        for url in urls:
            assert (url.scheme, url.port, url.path) == ("amqps", 5671, "/%2F"), name
            # Its own user, the password from its own secret file (as in the one-node file).
            assert (url.username, url.password) == (name, None), name
        assert service["environment"]["AMQP_PASSWORD_FILE"], name
        # What lets `--scale service_b=3` work, as in the one-node demo.
        assert "container_name" not in service and not service.get("ports"), name


def test_every_node_speaks_tls_alone_with_a_certificate_of_its_own(cluster: dict) -> None:
    """Each node mounts the TLS listener's settings and its own certificate volume, which
    provision fills for the node's host name; no other node mounts it."""
    services = cluster["services"]
    provided = {
        v["target"].removeprefix("/secrets/tls/"): v["source"]
        for v in services["provision"]["volumes"]
        if v["target"].startswith("/secrets/tls/")
    }
    for node in NODES:
        mounts = {v["target"]: v["source"] for v in services[node]["volumes"]}
        assert mounts["/etc/rabbitmq/conf.d/40-tls.conf"].endswith("rabbitmq/40-tls.conf"), node
        assert mounts["/etc/rabbitmq/tls"] == provided[services[node]["hostname"]], node
    assert len({provided[services[node]["hostname"]] for node in NODES}) == len(NODES)


def test_ports_are_published_on_loopback_only(cluster: dict) -> None:
    published = [
        port.get("host_ip")
        for service in cluster["services"].values()
        for port in service.get("ports", [])
    ]
    assert published and set(published) == {"127.0.0.1"}


def test_env_example_documents_the_cluster_settings(compose_bin: str, cluster: dict) -> None:
    assert cluster_model(compose_bin, ENV_EXAMPLE) == cluster
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    interpolated = set(re.findall(r"\$\{(\w+)", CLUSTER_FILE.read_text()))
    assert interpolated <= documented
