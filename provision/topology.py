"""`python -m provision.topology`: declare every queue of the pipeline, once the broker (every
node of a cluster) is up, as the operator's user, before any app starts.

The apps then run with DECLARE_QUEUES=own: none needs the right to create, and so to delete, a
queue another one owns. The queues are not in the broker's definitions (`provision.definitions`)
because a cluster's nodes import those at boot, before they have found each other: a quorum
queue declared then would have one member, not three. Declared here, after compose saw every
node healthy, each gets a member on every node and a leader where `queue_leader_locator` puts
it. Idempotent: it runs at every `up`, and declares what a new ORDERING or PARTITIONS needs.

AMQP_URL (with AMQP_PASSWORD_FILE) names the broker and the user; ORDERING, PARTITIONS and
QUEUE_TYPE shape the queues as they shape the apps'.
"""

from __future__ import annotations

import sys

import pika
import pika.exceptions

from common.nodes import url_parameters
from common.refusals import open_refusal
from common.retry import describe
from common.settings import BrokerSettings, Env, SettingsError, redact_url
from common.topology import every_input, queue_arguments


def pipeline_queues(broker: BrokerSettings) -> tuple[str, ...]:
    """Every queue of the pipeline as `broker` shapes it (partitions in keyed mode), and the
    dead-letter queue."""
    return (*every_input(broker), broker.dead_letter_queue)


def declare_pipeline(url: str, broker: BrokerSettings) -> tuple[str, ...]:
    """Declare every queue of the pipeline at `url`, shaped by `broker`; their names."""
    queues = pipeline_queues(broker)
    parameters = url_parameters(url, broker.ca_file)
    parameters.connection_attempts = 3
    parameters.retry_delay = 2
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_declare(queue, durable=True, arguments=queue_arguments(queue, broker))
    finally:
        if connection.is_open:
            connection.close()
    return queues


def main() -> int:
    try:
        broker = BrokerSettings.from_env(Env())
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    url = broker.amqp_urls[0]
    try:
        queues = declare_pipeline(url, broker)
    except (pika.exceptions.AMQPError, OSError) as error:  # an ssl.SSLError is an OSError
        refusal = open_refusal(error, redact_url(url))  # what to fix, when it says
        why = refusal or f"cannot declare the queues at {redact_url(url)}: {describe(error)}"
        print(f"topology: {why}", file=sys.stderr)
        return 1
    print(f"topology: {len(queues)} queues declared: {', '.join(queues)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
