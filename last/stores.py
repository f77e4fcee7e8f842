"""The store `last` writes to, opened from its settings for the time of a `with`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from last.memory_store import MemoryStore
from last.metrics import SinkMetrics
from last.redis_store import RedisStore
from last.store import Store, StoreUnavailable
from last.store_settings import StoreSettings
from last.writer import Writer

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_store(
    settings: StoreSettings,
    on_failure: Callable[[BaseException], None],
    metrics: SinkMetrics | None = None,
) -> Iterator[Store]:
    """The store `last` writes to, for the time of the `with`; raises StoreRefused if the store
    answers but cannot be used. A store that does not answer yet is not an error: the first
    records wait for it. `on_failure` is called once if the writer meets a bug (`last.writer`):
    the process should then stop, with exit code 1. `metrics` counts the writes, if given."""
    if not settings.url:
        log.info(
            "no STORE_URL: completed ids are kept in memory, so de-duplication holds within "
            "this process only"
        )
        yield MemoryStore()
        return
    store = RedisStore(settings)
    try:
        store.check()
    except StoreUnavailable as error:
        log.warning(
            "the store does not answer yet; messages wait for it",
            extra={"store": settings.display_url, "error": str(error)},
        )
    else:
        log.info(
            "completed records go to the store",
            extra={"store": settings.display_url, "key_prefix": settings.key_prefix},
        )
    writer = Writer(store, settings.display_url, on_failure, metrics=metrics)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()
        store.close()
