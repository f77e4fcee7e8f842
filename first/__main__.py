"""`python -m first`: publish NUMBER_OF_MESSAGES messages and exit 0 once all are confirmed."""

from __future__ import annotations

import logging

from common import tracing
from common.main import run, serve
from common.metrics import publish_metrics
from common.settings import BrokerSettings, Env
from first.flood import Flood, FloodSettings

log = logging.getLogger("first")


def main(env: Env) -> int:
    settings = FloodSettings.from_env(env)
    metrics = publish_metrics(env, settings.run_id)
    spans = tracing.for_flood(env, settings.next_queue)
    flood = Flood(BrokerSettings.from_env(env), settings, metrics=metrics, spans=spans)
    serve(flood)
    if flood.unconfirmed:
        early = " (stopped before all were published)" if flood.stopped_early else ""
        log.error(
            f"{flood.unconfirmed} messages were not confirmed by the broker{early}",
            extra={"unconfirmed": flood.unconfirmed, "confirmed": flood.confirmed},
        )
        return 1
    return 0


if __name__ == "__main__":
    run(main)
