"""Whether the broker has been usable, and for how long it has not: when to give up.

`ReconnectingConnection` gives up once no progress has been possible for CONNECT_TIMEOUT
seconds. Progress is what the user reports (a delivery settled, a confirm received), or a lost
connection on which the user was only waiting for work: an idle consumer on a flapping network
is not in an outage. A connection that breaks soon after it was set up with neither counts as
the same outage, so a broker that keeps closing on us, or a bug in one of our callbacks, backs
off and ends instead of spinning.
"""

from __future__ import annotations

from collections.abc import Callable

from common.refusals import BrokerUnreachable
from common.retry import LONGEST_DELAY
from common.settings import BrokerSettings

# Seconds a channel must have lasted to count as usable with nothing done on it: the longest
# back-off, so that a connection that breaks each time right after set-up never resets it.
USABLE_AFTER = LONGEST_DELAY


class Outage:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started = clock()
        self._ready_at = 0.0  # when the current channel became ready; 0 while setting up
        self._progressed = False  # the user made progress on the current channel
        self._lost_while_waiting = False  # the lost channel's user was only waiting for work

    @property
    def setting_up(self) -> bool:
        """No channel ready on the current connection yet."""
        return not self._ready_at

    def channel_ready(self) -> None:
        """The user took the channel (only then: one that fails to start never counts)."""
        self._ready_at = self._clock()
        self._progressed = False
        self._lost_while_waiting = False

    def progress(self) -> None:
        self._progressed = True

    def channel_lost(self, waiting_for_work: bool) -> None:
        self._lost_while_waiting = bool(self._ready_at) and waiting_for_work

    def connection_lost(self) -> bool:
        """True if the broker was usable until now: a new outage starts, its clock at zero.
        False if it broke while being set up, or soon after with nothing done."""
        usable = bool(self._ready_at) and (
            self._progressed
            or self._lost_while_waiting
            or self._clock() - self._ready_at >= USABLE_AFTER
        )
        self._ready_at = 0.0
        if usable:
            self._started = self._clock()
        return usable

    def waited(self) -> float:
        """Seconds since the broker was last usable (or since the start)."""
        return self._clock() - self._started


def unreachable(settings: BrokerSettings, waited: float, reason: str) -> BrokerUnreachable:
    """Giving up after `waited` seconds without a usable broker, the last try failing so."""
    return BrokerUnreachable(
        f"cannot reach the broker at {settings.display_url} after {waited:.0f}s ({reason}); "
        "start it or fix AMQP_URL, or raise CONNECT_TIMEOUT"
    )
