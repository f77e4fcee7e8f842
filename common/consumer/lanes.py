"""ORDERING=keyed: one delivery of a key at a time, in the order the broker sent them.

The consumer reads every partition of its stage (`common.topology`), each a queue with a single
active consumer. Replicas of a stage subscribe to every partition with a consumer priority that
hashes their identity with the partition (rendezvous hashing): the broker makes the highest one
active, so the partitions spread over the replicas, and when one goes its partitions pass to the
next highest. (Quorum queues honour priorities for single active consumers from RabbitMQ 3.13;
3.10 makes the first subscriber active for all of them.)

Inside the process, deliveries of one key wait in a lane behind the one in work: two messages of
a key are never worked on at once, and their outputs are published in the order they arrived,
while different keys use every worker; the next message of a key starts once the one before it
is settled. A failure is retried in place rather than requeued (a requeued message would come
back behind the rest of its key).

On stop nothing is cancelled (the next replica would become active at once and take later
messages of keys still in work here): what is in work is finished, what waits behind its key is
held unstarted, and the process ends without closing its connection, so that the broker returns
what it held to the head of each partition before the next replica takes over.
"""

from __future__ import annotations

from collections import deque

from common.consumer.ordering import Decision, Retry, delivery_attempt
from common.consumer.outcomes import DeadLetter, Delivery
from common.retry import retry_delay
from common.topology import consumer_priority


class KeyedLanes:
    """A lane per key with a delivery in work, holding the deliveries of that key behind it.
    `identity` (stage and replica) is what this replica's consumer priorities hash."""

    def __init__(self, attempt_limit: int, identity: str) -> None:
        self._limit = attempt_limit
        self._identity = identity
        self._lanes: dict[str, deque[Delivery]] = {}
        self._key_of: dict[int, str] = {}  # by delivery tag, for every delivery admitted
        self._retries: dict[int, int] = {}  # by delivery tag: failed tries retried in place
        self._stopping = False

    def consume_arguments(self, queue: str) -> dict[str, object]:
        return {"x-priority": consumer_priority(self._identity, queue)}

    def admit(self, delivery: Delivery) -> bool:
        key = self._key_of[delivery.tag] = lane_key(delivery)
        if key in self._lanes or self._stopping:
            # Its key is in work (it goes after, in order), or the process is stopping (it goes
            # back to the broker, ahead of its key's later messages).
            self._lanes.setdefault(key, deque()).append(delivery)
            return False
        self._lanes[key] = deque()
        return True

    def settled(self, delivery: Delivery) -> Delivery | None:
        key = self._key_of.pop(delivery.tag)
        self._retries.pop(delivery.tag, None)
        waiting = self._lanes.get(key)
        if waiting is None or self._stopping:
            return None  # stopping: those still waiting go back to the broker
        if waiting:
            return waiting.popleft()
        del self._lanes[key]
        return None

    def failed(self, delivery: Delivery, reason: str) -> Decision:
        retries = self._retries.get(delivery.tag, 0)
        attempt = delivery_attempt(delivery) + retries
        if attempt >= self._limit:
            return DeadLetter(f"failed on attempt {attempt}: {reason}")
        self._retries[delivery.tag] = retries + 1
        return Retry(attempt, retry_delay(retries + 1))

    def drain_begins(self) -> bool:
        self._stopping = True
        return False  # cancelling would hand our partitions over while keys are in work here

    def held(self) -> int:
        return sum(len(waiting) for waiting in self._lanes.values())

    def drain_ends(self) -> bool:
        # A Close would cancel our consumers first, making the next replica active while what
        # we hold is still ours, and it would start on later messages of those keys.
        return False


def lane_key(delivery: Delivery) -> str:
    """The key a delivery is ordered by: its key header, else its id (no order to keep)."""
    properties = delivery.properties
    headers = properties.headers
    key = headers.get("key") if isinstance(headers, dict) else None
    if isinstance(key, str):
        return key
    if isinstance(properties.message_id, str):
        return properties.message_id
    return f"#{delivery.tag}"
