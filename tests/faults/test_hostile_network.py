"""A hostile network and hostile input between the pipeline and a healthy broker: connections
cut during the AMQP handshake, a network that cuts every connection every 0.5 to 3 s for the
whole run, and messages whose headers pika cannot decode.

Every process reaches the broker through a `ChaosProxy`; the broker itself stays up throughout.
`PipelineRun.finish` then checks that each message completed exactly once by id, that no queue
holds anything, and that no process died.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.broker import Vhost
from harness.chaos_proxy import ChaosProxy
from harness.pipeline import PipelineRun
from tests.integration.test_hostile_input import PASSED_ON, RawProperties
from tests.unit.test_frames import HOSTILE, properties_with

SOME_WORK = {"RANDOM_WAIT_MIN": 0.001, "RANDOM_WAIT_MAX": 0.01}
RETRYING = "broker not reachable, retrying"


@pytest.fixture
def proxy(vhost: Vhost) -> Iterator[ChaosProxy]:
    proxy = ChaosProxy.in_front_of(vhost.url)
    yield proxy
    proxy.stop()


def test_a_cut_during_the_handshake_is_retried_not_taken_for_a_wrong_password(
    start, vhost: Vhost, proxy: ChaosProxy
) -> None:
    """pika reports such a cut as a probable authentication error; it is an outage like any
    other: retried, and the run completes. (It used to end last and service_c at once.)"""
    run = PipelineRun(start, vhost, 500, env={"AMQP_URL": proxy.url(vhost.url), **SOME_WORK})
    proxy.cut_handshakes(12)  # about two for each of the five processes
    run.start_all()
    row = run.finish("connections cut during the AMQP handshake", timeout=90)
    assert proxy.cuts == 12
    retried = [
        record
        for proc in run.processes()
        for record in proc.messages(RETRYING)
        if "Probable" in record["reason"]
    ]
    assert retried, "no process saw a handshake cut"
    for proc in run.processes():
        assert proc.errors() == [], proc.tail()
    assert row.lost == 0


def test_a_flapping_network_ends_no_process(start, vhost: Vhost, proxy: ChaosProxy) -> None:
    """Every connection cut every 0.5 to 3 s for 40 s while 5,000 messages flow, with a
    CONNECT_TIMEOUT (10 s) far shorter than the flapping: a process that makes progress is not
    in an outage, so none gives up."""
    env = {"AMQP_URL": proxy.url(vhost.url), "CONNECT_TIMEOUT": 10, **SOME_WORK}
    run = PipelineRun(start, vhost, 5000, env={**env, "PUBLISH_RATE": 250})
    run.start_all()
    run.wait_for_consumers()
    proxy.flap(40, seed=9)
    row = run.finish("a flapping network: every connection cut every 0.5-3 s", timeout=150)
    assert proxy.cuts >= 20
    for proc in run.processes():
        assert len(proc.messages("connected")) > 3, proc.name  # it did go through the flapping
        assert proc.errors() == [], proc.tail()
    assert row.lost == 0


def test_hostile_headers_mid_run_cost_only_themselves(start, vhost: Vhost) -> None:
    """Headers pika cannot decode, injected while 2,000 messages flow: each is dead-lettered
    with its reason, and no connection is lost (it used to take the good messages with it)."""
    run = PipelineRun(start, vhost, 2000, env={"PUBLISH_RATE": 400, **SOME_WORK})
    run.start_all()
    run.wait_until_completed(0.2, timeout=60)
    with vhost.channel() as channel:
        channel.confirm_delivery()
        for n in range(10):
            hostile = HOSTILE[PASSED_ON[n % len(PASSED_ON)]]
            channel.basic_publish(
                "", "service_a", b'["seq-0"]', RawProperties(properties_with(hostile))
            )
    run.dead_bodies[b'["seq-0"]'] = 10
    row = run.finish("hostile headers (a timestamp past 9999, tables nested too deep) mid-run")
    for proc in run.processes():
        assert len(proc.messages("connected")) == 1, proc.name  # never reconnected
    assert (row.lost, row.dead_lettered) == (0, 10)
