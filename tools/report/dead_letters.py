"""How many messages wait in the dead-letter queue: the one count `last`'s records cannot give.

The depth is read with a passive queue_declare, which neither creates the queue nor touches its
messages. It counts every dead letter still in the queue, from this run and any before it.
"""

from __future__ import annotations

import pika
import pika.exceptions

from common.nodes import url_parameters
from common.refusals import open_refusal
from common.retry import describe
from common.settings import redact_url
from tools.cli import RUN_FAILED, CliError

NOT_FOUND = 404
TIMEOUT_S = 10


def dead_letter_depth(amqp_url: str, queue: str, ca_file: str = "") -> int | None:
    """Messages ready in `queue`, or None when the virtual host has no such queue; an amqps://
    broker verified against the CAs of `ca_file`."""
    parameters = url_parameters(amqp_url, ca_file)
    parameters.connection_attempts = 1
    parameters.socket_timeout = TIMEOUT_S
    parameters.blocked_connection_timeout = TIMEOUT_S
    connection = None
    try:
        connection = pika.BlockingConnection(parameters)
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == NOT_FOUND:
            return None
        raise CliError(
            f"the broker refused to show queue {queue!r}: {error.reply_text}", RUN_FAILED
        ) from None
    except (pika.exceptions.AMQPError, OSError) as error:  # OSError: say, an unknown host
        refusal = open_refusal(error, redact_url(amqp_url))  # a login, a certificate refused
        raise CliError(
            str(refusal)
            if refusal
            else f"cannot ask the broker at {redact_url(amqp_url)} for the dead-letter count "
            f"({innermost(error)})",
            RUN_FAILED,
        ) from None
    finally:
        if connection is not None and connection.is_open:
            connection.close()


def innermost(error: BaseException) -> str:
    """The root of pika's nested connection errors, e.g. 'Connection refused'."""
    while True:
        inner = getattr(error, "exception", None) or (error.args[0] if error.args else None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return describe(error)
