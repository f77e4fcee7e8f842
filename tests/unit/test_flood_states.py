"""first's Flood: a window of unconfirmed messages, pacing, and what a reconnect does to both."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from common.connection import ReconnectingConnection
from common.settings import BrokerSettings, Env
from first.flood import MAX_IN_FLIGHT, Flood, FloodSettings
from tests.unit.fakes import FakeClock, FakeConnection, FakeIOLoop


@pytest.fixture(autouse=True)
def connections() -> Iterator[None]:
    FakeConnection.made.clear()
    yield
    FakeConnection.made.clear()


def flood(**env: str) -> tuple[Flood, FakeIOLoop]:
    loop = FakeIOLoop(FakeClock())
    connect = partial(
        ReconnectingConnection, ioloop=loop, connection_class=FakeConnection, clock=loop.clock
    )
    settings = FloodSettings.from_env(Env({"PROGRESS_INTERVAL": "0", **env}))
    result = Flood(BrokerSettings.from_env(Env({})), settings, connect=connect, clock=loop.clock)
    result.connection.run()
    FakeConnection.made[-1].open()
    return result, loop


def reconnect(loop: FakeIOLoop) -> None:
    """Cut the connection, run the loop until the next one is made, and open it."""
    lost = FakeConnection.made[-1]
    lost.lose()
    while FakeConnection.made[-1] is lost:
        loop.run(until=loop.clock.now + 0.1)
        loop.clock.now += 0.1
    FakeConnection.made[-1].open()


def test_the_window_bounds_what_awaits_a_confirm() -> None:
    first, _ = flood(NUMBER_OF_MESSAGES="5000")
    channel = FakeConnection.made[-1].channel_
    assert len(channel.published) == MAX_IN_FLIGHT
    channel.confirm(10, multiple=True)
    assert len(channel.published) == MAX_IN_FLIGHT + 10
    assert first.confirmed == 10


@pytest.mark.parametrize(("confirmed", "connections_at_once"), [(0, 1), (1, 2)])
def test_confirms_count_as_progress(confirmed: int, connections_at_once: int) -> None:
    """A connection lost right after set-up backs off before the next try, unless a confirm
    came on it: then the broker was usable, and the next connection is made at once."""
    flood(NUMBER_OF_MESSAGES="3")
    if confirmed:
        FakeConnection.made[-1].channel_.confirm(confirmed)
    FakeConnection.made[-1].lose()
    assert len(FakeConnection.made) == connections_at_once


def test_a_reconnect_publishes_the_unconfirmed_again_with_their_ids() -> None:
    _, loop = flood(NUMBER_OF_MESSAGES="3")
    before = FakeConnection.made[-1].channel_
    before.confirm(1)
    reconnect(loop)
    after = FakeConnection.made[-1].channel_
    ids = [p.properties.message_id for p in after.published]
    assert ids == [p.properties.message_id for p in before.published[1:]]


def test_a_paced_flood_keeps_one_timer_chain_across_reconnects() -> None:
    """Each reconnect used to start another self-rescheduling pump: the rate held, the wake-ups
    multiplied."""
    first, loop = flood(NUMBER_OF_MESSAGES="1000", PUBLISH_RATE="1")
    for _ in range(5):
        first.connection.note_progress()  # a connection that worked: reconnect at once,
        reconnect(loop)  # before the paced pump's timer (1 s away) has fired
    pumps = [delay for delay in loop.delays() if delay > 0]
    assert len(pumps) == 1


def test_the_rate_holds_across_reconnects() -> None:
    first, loop = flood(NUMBER_OF_MESSAGES="1000", PUBLISH_RATE="10")
    start = loop.clock.now
    loop.run_for(2.0)
    reconnect(loop)
    loop.run_for(3.0)
    published = first._next_seq - 1
    assert published == pytest.approx(10 * (loop.clock.now - start), abs=2)
