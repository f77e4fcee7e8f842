"""A connection the broker blocks (a memory or disk alarm) is closed only once it is unblocked.

While it blocks a connection, the broker reads nothing more from it, our Close included: a
connection closed then would hang half-closed for as long as the alarm lasts. So a close asked
for meanwhile waits for Connection.Unblocked, and a stop leaves the socket to the process exit.
"""

from __future__ import annotations

import logging

import pika

log = logging.getLogger(__name__)


class Blocking:
    """Whether the broker blocks the current connection, and the close that waits for it."""

    def __init__(self) -> None:
        self.blocked = False
        self._close_waiting: pika.SelectConnection | None = None

    def watch(self, connection: pika.SelectConnection) -> None:
        """Follow a connection that has just opened (not blocked yet, by definition)."""
        self.blocked = False
        self._close_waiting = None
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)

    def close(self, connection: pika.SelectConnection) -> None:
        """Close `connection` now, or as soon as the broker unblocks it."""
        if self.blocked:
            self._close_waiting = connection
            return
        self._close_waiting = None
        connection.close()

    def _on_blocked(self, _connection: object, _frame: object) -> None:
        self.blocked = True
        log.warning("broker blocked publishing (memory or disk alarm); waiting for it to clear")

    def _on_unblocked(self, _connection: object, _frame: object) -> None:
        self.blocked = False
        log.info("broker unblocked publishing")
        waiting, self._close_waiting = self._close_waiting, None
        if waiting is not None and waiting.is_open:
            waiting.close()
