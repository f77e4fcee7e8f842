"""Who may send to a stage: the user the broker vouches for in a message's `user_id`.

RabbitMQ checks `user_id` against the login of the connection that publishes the message (every
publish here carries it, `common.publisher`), so with a user per service it names the process
that sent the message, for certain. A stage told to take its input only from the stage before it
(ACCEPT_FROM, the user that stage logs in as) dead-letters anything else, a message without
`user_id` too: a compromised service that writes straight into a later stage's queue, which
the default exchange lets it do, gets nothing through. Unset, any sender is taken: where one
user runs every process (a test broker), `user_id` names no one in particular.

The broker's own redeliveries keep the message as it was sent, so a redelivery passes as the
first delivery did.
"""

from __future__ import annotations

import pika


def sender_refusal(properties: pika.BasicProperties, queue: str, accept_from: str) -> str | None:
    """Why `queue` does not take a message with these properties, or None if it does."""
    if not accept_from:
        return None
    sender = properties.user_id
    if sender == accept_from:
        return None
    shown = f"user {sender!r}" if isinstance(sender, str) and sender.isprintable() else "no user"
    return f"sent by {shown}: {queue} accepts messages only from user {accept_from!r}"
