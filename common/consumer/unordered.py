"""ORDERING=unordered: every delivery starts at once, and a failure goes back to the queue."""

from __future__ import annotations

from common.consumer.ordering import Decision, Retry, delivery_attempt
from common.consumer.outcomes import DeadLetter, Delivery


class Unordered:
    """Every delivery starts at once on the next free worker; a failure is handed back to the
    queue (another replica may take it) and dead-lettered on the last allowed delivery."""

    def __init__(self, attempt_limit: int) -> None:
        self._limit = attempt_limit

    def consume_arguments(self, queue: str) -> None:
        return None

    def admit(self, delivery: Delivery) -> bool:
        return True

    def settled(self, delivery: Delivery) -> None:
        return None

    def failed(self, delivery: Delivery, reason: str) -> Decision:
        attempt = delivery_attempt(delivery)
        if attempt >= self._limit:
            return DeadLetter(f"failed on delivery {attempt}: {reason}")
        return Retry(attempt)

    def drain_begins(self) -> bool:
        return True  # a cancelled consumer gets nothing new; what is in hand is finished

    def held(self) -> int:
        return 0

    def drain_ends(self) -> bool:
        return True
