"""The metrics a consumer's events give, read back from the registry as Prometheus would."""

from __future__ import annotations

import urllib.request
from functools import partial

import pika
import pytest

from common.connection import ReconnectingConnection
from common.messages import Message
from common.metrics import (
    ConsumerMetrics,
    Metrics,
    MetricsSettings,
    PublishMetrics,
    consumer_metrics,
    publish_metrics,
)
from common.settings import BrokerSettings, Env, SettingsError
from first.flood import Flood, FloodSettings
from harness.private_broker import free_ports
from tests.unit.fakes import FakeClock, FakeConnection, FakeIOLoop
from tests.unit.test_consumer_states import Rig, stamp


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"stage": metrics.stage, **labels})


def test_every_delivery_is_counted_by_what_became_of_it() -> None:
    def work(message: Message) -> Message:
        if message.seq == 3:
            raise RuntimeError("flaky")
        return stamp(message)

    metrics = Metrics("service_b")
    rig = Rig(work, "service_b")
    rig.consumer.events.subscribe(ConsumerMetrics(metrics))
    for seq in (1, 2, 3):
        rig.deliver(Message.first(seq, 1.0).stamped("service_a", 2.0))
    rig.deliver(body=b"not json", properties=pika.BasicProperties(message_id="m"))
    assert value(metrics, "rabbithole_messages_in_progress") == 4
    rig.work()
    rig.confirm_all()
    counts = {
        name: value(metrics, f"rabbithole_{name}_total")
        for name in (
            "messages_received",
            "messages_published",
            "messages_confirmed",
            "messages_requeued",
            "messages_dead_lettered",
        )
    }
    assert counts == {
        "messages_received": 4,
        "messages_published": 2,
        "messages_confirmed": 2,
        "messages_requeued": 1,
        "messages_dead_lettered": 1,
    }
    handled = {
        outcome: value(metrics, "rabbithole_messages_handled_total", outcome=outcome)
        for outcome in ("forwarded", "done", "dead_lettered", "failed")
    }
    assert handled == {"forwarded": 2, "done": 0, "dead_lettered": 1, "failed": 1}
    assert value(metrics, "rabbithole_handler_duration_seconds_count") == 4
    assert value(metrics, "rabbithole_messages_in_progress") == 0
    assert value(metrics, "rabbithole_ack_batch_messages_sum") == 3  # 2 outputs, 1 dead letter
    assert value(metrics, "rabbithole_ack_batch_messages_count") == 1  # in one flush


def test_the_node_and_the_reconnects_are_told() -> None:
    metrics = Metrics("service_b")
    rig = Rig(stamp, "service_b")
    rig.consumer.events.subscribe(ConsumerMetrics(metrics))
    rig.deliver()
    FakeConnection.made[-1].lose()
    rig.loop.run(until=rig.clock.now)
    FakeConnection.made[-1].open()
    assert value(metrics, "rabbithole_reconnects_total") == 1
    assert value(metrics, "rabbithole_messages_in_progress") == 0  # the broker has it again
    node = FakeConnection.made[-1].params
    info = value(metrics, "rabbithole_broker_node_info", node=f"{node.host}:{node.port}")
    assert info == 1


def test_no_metrics_and_no_server_without_metrics_port() -> None:
    assert consumer_metrics(Env({}), "service_a") == ()


@pytest.fixture
def free_port() -> int:
    [port] = free_ports(1)
    return port


def test_metrics_are_served_on_metrics_port(free_port: int) -> None:
    [observer] = consumer_metrics(Env({"METRICS_PORT": str(free_port)}), "service_a")
    assert isinstance(observer, ConsumerMetrics)
    with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert 'rabbithole_messages_received_total{stage="service_a"} 0.0' in text
    assert "process_cpu_seconds_total" in text


def test_a_port_in_use_is_one_clear_line(free_port: int) -> None:
    Metrics("first").serve(MetricsSettings(free_port))
    with pytest.raises(SettingsError, match="METRICS_PORT") as raised:
        Metrics("first").serve(MetricsSettings(free_port))
    assert "a port free on this host" in str(raised.value)


def test_metrics_port_is_a_port() -> None:
    with pytest.raises(SettingsError, match="METRICS_PORT"):
        MetricsSettings.from_env(Env({"METRICS_PORT": "70000"}))


def test_first_counts_what_it_published_confirmed_and_had_refused() -> None:
    metrics = Metrics("first")
    loop = FakeIOLoop(FakeClock())
    connect = partial(
        ReconnectingConnection, ioloop=loop, connection_class=FakeConnection, clock=loop.clock
    )
    settings = FloodSettings.from_env(Env({"PROGRESS_INTERVAL": "0", "NUMBER_OF_MESSAGES": "3"}))
    flood = Flood(
        BrokerSettings.from_env(Env({})),
        settings,
        connect=connect,
        clock=loop.clock,
        metrics=PublishMetrics(metrics),
    )
    FakeConnection.made.clear()
    flood.connection.run()
    FakeConnection.made[-1].open()
    channel = FakeConnection.made[-1].channel_
    channel.confirm(1)
    channel.confirm(2, ack=False)  # refused for now: sent again after a pause
    loop.run_for(1.0)
    channel.confirm(3)
    channel.confirm(4)
    assert value(metrics, "rabbithole_messages_published_total") == 3  # the re-send is a refusal
    assert value(metrics, "rabbithole_messages_confirmed_total") == 3
    assert value(metrics, "rabbithole_publishes_refused_total") == 1
    assert value(metrics, "rabbithole_reconnects_total") == 0
    FakeConnection.made.clear()


def test_first_names_its_run(free_port: int) -> None:
    env = Env({"METRICS_PORT": str(free_port)})
    publish_metrics(env, "run-7")
    with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert 'rabbithole_run_info{run_id="run-7",stage="first"} 1.0' in text
