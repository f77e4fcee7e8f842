"""The ordering policy ORDERING names, made afresh for each channel."""

from __future__ import annotations

from collections.abc import Callable

from common.consumer.lanes import KeyedLanes
from common.consumer.ordering import OrderingPolicy, attempt_limit
from common.consumer.unordered import Unordered
from common.settings import BrokerSettings

PolicyFactory = Callable[[], OrderingPolicy]


def policy_for(broker: BrokerSettings, identity: str) -> PolicyFactory:
    """A maker of the policy for `broker.ordering`; `identity` is the stage and replica (what
    keyed mode's consumer priorities hash)."""
    limit = attempt_limit(broker)
    makers: dict[str, PolicyFactory] = {
        "unordered": lambda: Unordered(limit),
        "keyed": lambda: KeyedLanes(limit, identity),
    }
    return makers[broker.ordering]
