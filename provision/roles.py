"""Who may do what on the broker: a user per role, each with only the rights its job needs.

RabbitMQ grants three rights per virtual host, each a regular expression over resource names
(its access-control guide): *configure* (declare and delete queues and exchanges), *write*
(publish to an exchange, bind a queue), *read* (consume from a queue, purge it). Every pattern
here is anchored (`^...$`): an unanchored `service_a` would also match `not_service_a_copy`.

- `first` publishes into the default exchange and nothing else: no queue is its own.
- Each stage reads, and may declare, its own input only (and its partitions in keyed mode):
  since configure also allows delete, a stage may delete no other stage's queue. It writes to
  the default exchange, through which it reaches the next stage and the dead-letter queue.
- `last` is a stage whose input is `service_log`.
- `monitor` (the tools that read: `watch`, the report) has the `monitoring` tag for the
  management API and no right on any resource: it sees the queues, touches nothing.
- `admin` is the operator's: every right, the `administrator` tag. No process uses it.

Write on the default exchange reaches every queue in the virtual host: it is how the seed's
design routes, and what it does not stop (a stage publishing into a later stage's queue) the
`user_id` check does (`common.consumer.senders`): every stage names, in ACCEPT_FROM, the one
user whose messages it takes. An exchange per hop would close it in the broker itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.topology import SINK_QUEUE, STAGES

NOTHING = "^$"  # matches no resource name: the right is not granted
EVERYTHING = "^.*$"
DEFAULT_EXCHANGE = "^amq\\.default$"  # the default exchange ("") is `amq.default` to the checks


@dataclass(frozen=True)
class Role:
    """One user: its name, tags (management API access) and rights on the virtual host, and
    the user whose messages it accepts (for a consumer; "" for none)."""

    role: str  # what it is in the pipeline: first, service_a, ..., last, monitor, admin
    user: str  # the user name it logs in with
    tags: tuple[str, ...] = ()
    configure: str = NOTHING
    write: str = NOTHING
    read: str = NOTHING
    accept_from: str = ""


def own_queue(queue: str) -> str:
    """The queue itself, or one of its partitions (`service_b.3`)."""
    return f"^{re.escape(queue)}(\\.[0-9]+)?$"


def pipeline_roles(prefix: str = "") -> tuple[Role, ...]:
    """Every role of the pipeline; user names are the role names after `prefix` (tests give
    their own, so that their users never meet another run's)."""
    consumers = (*STAGES, "last")
    inputs = (*STAGES, SINK_QUEUE)
    senders = ("first", *STAGES)
    roles = [Role("first", f"{prefix}first", write=DEFAULT_EXCHANGE)]
    for role, queue, sender in zip(consumers, inputs, senders, strict=True):
        mine = own_queue(queue)
        roles.append(
            Role(
                role,
                f"{prefix}{role}",
                configure=mine,
                write=DEFAULT_EXCHANGE,
                read=mine,
                accept_from=f"{prefix}{sender}",
            )
        )
    roles.append(Role("monitor", f"{prefix}monitor", tags=("monitoring",)))
    roles.append(
        Role(
            "admin",
            f"{prefix}admin",
            tags=("administrator",),
            configure=EVERYTHING,
            write=EVERYTHING,
            read=EVERYTHING,
        )
    )
    return tuple(roles)
