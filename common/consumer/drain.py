"""Stopping without losing a delivery attempt: the cancel that keeps what is in flight, and the
counts the `stopped` line reports.

On SIGTERM the consumer is cancelled (the ordering policy permitting) and every message in hand
is finished, as is every delivery the broker sent before its Cancel-Ok: handing any of them back
would count as a delivery against the limit. The `stopped` line counts what was finished, what
arrived after the stop began, and what was handed back (held, or left at DRAIN_TIMEOUT).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pika.channel import Channel

from common.connection import ReconnectingConnection
from common.consumer.channel import ChannelState
from common.consumer.events import Event, Events, Received, Settled
from common.consumer.settings import ConsumerSettings

log = logging.getLogger("common.consumer")


class Drain:
    """The stop of one consumer, begun once: what is in work is finished, then the connection
    ends as the ordering policy says. Each call takes the current channel state (None: lost)."""

    def __init__(
        self,
        connection: ReconnectingConnection,
        events: Events,
        settings: ConsumerSettings,
        per_consumer: int,
    ) -> None:
        self._connection = connection
        self._timeout = settings.drain_timeout
        self._per_consumer = per_consumer
        self._counts = DrainCounts()
        events.subscribe(self._counts)

    def begin(self, state: ChannelState | None) -> None:
        if state is None:
            self._connection.stop()
            return
        if state.policy.drain_begins():
            for tag in state.consumer_tags:
                cancel_keeping_deliveries_in_flight(
                    state.channel, tag, lambda: self._on_cancel_ok(state)
                )
            state.cancel_ok_pending = True
        log.info("stopping: finishing messages in hand", extra={"in_hand": len(state.acks)})
        self._connection.call_later(self._timeout, lambda: self._timed_out(state))
        self.finish_if_done(state)

    def finish_if_done(self, state: ChannelState | None) -> None:
        """End the connection if nothing is in work any more (after a settle, a Cancel-Ok)."""
        if self._connection.stopping:
            return
        if state is None:
            self._connection.stop()
            return
        held = state.policy.held()
        if state.cancel_ok_pending or len(state.acks) > held:
            return  # deliveries may still come, or are in work
        log.info("stopped: every message in work finished", extra=self._counts.fields(held))
        if state.policy.drain_ends():
            self._connection.stop()
            return
        # Ended without a Close, our consumers go down instead, and the broker puts what they
        # held back at the head of each queue before the next consumer takes over. A Basic.Qos
        # round trip first: the broker answers it only after the acks sent before it.
        state.channel.basic_qos(
            prefetch_count=self._per_consumer,
            callback=lambda _frame: self._connection.stop(close=False),
        )

    def _on_cancel_ok(self, state: ChannelState) -> None:
        state.cancel_ok_pending = False
        self.finish_if_done(state)

    def _timed_out(self, state: ChannelState) -> None:
        if not self._connection.stopping:
            log.warning(
                "drain timed out; the broker redelivers what was not finished",
                extra=self._counts.fields(len(state.acks)),
            )
            self._connection.stop()


class DrainCounts:
    """An observer, subscribed when the drain begins: what was finished and what arrived."""

    def __init__(self) -> None:
        self.finished = 0
        self.arrived = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Settled) and event.acked:
            self.finished += 1
        elif isinstance(event, Received):
            self.arrived += 1

    def fields(self, handed_back: int) -> dict[str, int]:
        """The fields of the `stopped` and `drain timed out` lines."""
        return {
            "finished": self.finished,
            "arrived_after_cancel": self.arrived,
            "handed_back": handed_back,
        }


def cancel_keeping_deliveries_in_flight(
    channel: Channel, consumer_tag: str, on_cancel_ok: Callable[[], None]
) -> None:
    """basic.cancel, without handing back the deliveries the broker sends before it sees it.

    The broker may send any number of deliveries between our Cancel and its Cancel-Ok. pika 1.4
    rejects each of them (requeue), which on a quorum queue costs the message a delivery
    attempt; it has no option to keep them. They are ours until acked, so take them like any
    other delivery and finish them: remove the tag from pika's set of cancelled consumers until
    the Cancel-Ok, whose handler removes the consumer for good. (tests/unit pins this against
    pika's real Channel, so a pika upgrade that changes it fails a test, not a drain.)"""
    channel.basic_cancel(consumer_tag, callback=lambda _frame: on_cancel_ok())
    cancelled = getattr(channel, "_cancelled", None)
    if isinstance(cancelled, set):
        cancelled.discard(consumer_tag)
