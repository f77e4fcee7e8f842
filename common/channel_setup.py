"""A new channel made ready for its user (`ChannelUser`): every queue declared, then prefetch set.

The queues are declared one after the other (idempotently, with the arguments
`common.topology` gives them; those the process does not own only checked, passively, when
DECLARE_QUEUES=own), and prefetch (0: none) with basic.qos; only then is the channel handed on.
A channel closed meanwhile is dropped: its close callbacks take over (a queue found missing
closes it with 404, and the connection tries again later, as after an outage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pika.channel import Channel

from common.settings import BrokerSettings
from common.topology import Queues, queue_arguments


class ChannelUser(Protocol):
    """What a connection serves: something that uses a ready channel until it is lost."""

    def on_channel_ready(self, channel: Channel) -> None:
        """The channel is open, its queues are declared and prefetch is set."""

    def on_channel_lost(self) -> None:
        """The channel is gone; anything tied to it (delivery tags, confirms) is void."""

    def waiting_for_work(self) -> bool:
        """Nothing in hand: the user only waits for the broker to send it something."""


def set_up(
    channel: Channel,
    queues: Queues,
    settings: BrokerSettings,
    prefetch: int,
    ready: Callable[[Channel], None],
) -> None:
    """Declare `queues` on `channel`, set `prefetch`, then call `ready(channel)`."""
    check_others = settings.declare_queues == "own"
    own = tuple(dict.fromkeys(queues.own))
    others = tuple(name for name in dict.fromkeys(queues.others) if name not in own)
    declarations = (*((name, False) for name in own), *((name, check_others) for name in others))

    def declare(remaining: tuple[tuple[str, bool], ...]) -> None:
        if not channel.is_open:
            return
        if remaining:
            (name, passive), rest = remaining[0], remaining[1:]
            channel.queue_declare(
                name,
                passive=passive,
                durable=True,
                arguments=queue_arguments(name, settings),
                callback=lambda _frame: declare(rest),
            )
        elif prefetch:
            channel.basic_qos(prefetch_count=prefetch, callback=lambda _frame: ready(channel))
        else:
            ready(channel)

    declare(declarations)
