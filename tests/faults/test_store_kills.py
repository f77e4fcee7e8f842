"""`last` SIGKILLed again and again on a full queue, sharing its store: every id gets its line.

A `last` killed after its store took a record and before the record's `completed` line leaves
the line to the `last` that gets the redelivery (`last.store`): it writes it, recovered. The one
window left is a kill after a batch's lines and before the store marks them written: those
lines come twice, at most PREFETCH per kill. Two replicas work on a full queue so that each is
busy, holding records, when it is killed; each victim is replaced at once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

from common.topology import SINK_QUEUE
from harness.broker import Vhost
from harness.pipeline import Row, report
from harness.processes import Proc, wait_for
from harness.store import StoreKeys
from tests.integration.test_store import finished, publish
from tools.store_reader import unwritten_lines

COUNT = 12_000
KILLS = 20
PREFETCH = 50  # the most lines one kill can give twice: what the victim held unacked
REPLICAS = 2


def test_twenty_kills_leave_no_id_without_its_line(start, vhost: Vhost, store: StoreKeys) -> None:
    started = time.monotonic()
    vhost.declare(SINK_QUEUE)
    messages = [finished(seq) for seq in range(1, COUNT + 1)]
    publish(vhost, messages)
    env = {**store.env, "PREFETCH": PREFETCH, "PROGRESS_INTERVAL": 0}
    lasts: list[Proc] = [start("last", f"last-{n}", **env) for n in range(REPLICAS)]

    def taken() -> int:
        return COUNT - vhost.depth(SINK_QUEUE)

    def consuming() -> list[Proc]:
        return [p for p in lasts if p.running and p.messages("consuming")]

    for kill in range(1, KILLS + 1):
        # Spread the kills over the backlog, each on a `last` that is at work.
        target = COUNT * kill // (KILLS + 2)
        wait_for(lambda t=target: taken() >= t, 60, f"{target} messages taken")
        wait_for(consuming, 30, "a last at work")
        victim = consuming()[0]
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        lasts.append(start("last", f"last-{REPLICAS + kill}", **env))

    wait_for(lambda: vhost.depth(SINK_QUEUE) == 0, 120, "the queue drained")
    wait_for(lambda: len(store.records()) == COUNT, 60, f"{COUNT} records stored")
    wait_for(lambda: unwritten_lines(store.settings) == 0, 30, "every line marked written")
    survivors = [p for p in lasts if p.running]
    for proc in survivors:
        proc.signal(signal.SIGTERM)
    for proc in survivors:
        assert proc.wait(30) == 0, proc.tail()
        assert "Traceback" not in proc.stderr()

    lines = Counter(r["broker_message_id"] for p in lasts for r in p.messages("completed"))
    recovered = sum(len([r for r in p.messages("completed") if r.get("recovered")]) for p in lasts)
    missing = {m.message_id for m in messages} - set(lines)
    twice = sum(n - 1 for n in lines.values())
    print(
        f"\n{KILLS} kills, {COUNT} ids: {len(missing)} without a completed line, {twice} lines "
        f"twice, {recovered} recovered lines"
    )
    report(
        Row(
            scenario=f"`last` SIGKILLed {KILLS} times on a full queue, sharing its store",
            messages=COUNT,
            lost=len(missing),
            duplicates_delivered=sum(len(p.messages("duplicate")) for p in lasts) + recovered,
            duplicates_logged=twice,
            dead_lettered=vhost.depth("dead_letter"),
            seconds=round(time.monotonic() - started, 1),
            notes=f"lost: ids without a completed line; {recovered} lines written recovered; "
            f"lines twice within the bound of {KILLS * PREFETCH} (PREFETCH per kill)",
        )
    )
    assert not missing
    assert twice <= KILLS * PREFETCH
    assert set(lines) == set(store.records())
    assert vhost.depth("dead_letter") == 0
