"""Reading `last`'s records back: from its RESULTS_FILE, saved `docker compose logs last`, or
its store.

Both hold one JSON object per line; the logs put a prefix before each (`last-1  | `, or
`last_1  | ` from Compose v1, possibly coloured or time-stamped) and mix in other records
(`connected`, `progress`). Lines that are not a JSON object are skipped, so that a line cut
short by a killed process does not spoil the rest. A `completed` or `duplicate` record that
lacks a field the report needs is an error naming the line: the file is not what it seems.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from last.store import StoreRefused, StoreUnavailable
from last.store_settings import StoreSettings
from tools.cli import RUN_FAILED, CliError
from tools.store_reader import stored_records

KINDS = ("completed", "duplicate")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SEQ = re.compile(r"seq-([0-9]{1,18})")


@dataclass(frozen=True)
class Record:
    """One `completed` or `duplicate` record; `line` is its 1-based line number in the file."""

    kind: str
    seq: int
    message_id: str
    stages: tuple[str, ...]
    times: dict[str, float]
    line: int
    run_id: str | None = None  # which run of `first` published it (None: an older `last`)
    key: str | None = None  # what it is about (KEYS); None: no key

    @property
    def created_at(self) -> float:
        return self.times["created_at"]

    @property
    def completed_at(self) -> float:
        return self.times["completed_at"]


@dataclass(frozen=True)
class Records:
    records: list[Record]
    summaries: int
    skipped_lines: int


def read_records(path: Path) -> Records:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as error:
        raise CliError(f"{path}: cannot read it ({error.strerror})") from None
    if not text.strip():
        raise CliError(f"{path} is empty: expected last's records (see --help)")
    records, summaries, skipped = [], 0, 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = json_object(line)
        kind = fields.get("message") if fields else None
        if kind in KINDS:
            records.append(parse_record(fields, kind, f"{path}:{number}", number))
        elif kind == "summary":
            summaries += 1
        else:
            skipped += 1
    if not records:
        raise CliError(
            f"{path}: none of its {skipped + summaries} lines is a completed or duplicate record "
            "(expected last's RESULTS_FILE, or `docker compose logs last` with LOG_FORMAT=json)"
        )
    return Records(records, summaries, skipped)


def read_store(settings: StoreSettings) -> Records:
    """The records `last` keeps in its store: one `completed` record per id."""
    where = f"the store at {settings.display_url}"
    try:
        found = sorted(stored_records(settings))
    except StoreRefused as error:  # says which store, and what to fix
        raise CliError(str(error), RUN_FAILED) from None
    except StoreUnavailable as error:
        raise CliError(f"cannot read {where}: {error}", RUN_FAILED) from None
    if not found:
        raise CliError(
            f"{where} holds no records under {settings.key_prefix}* (is STORE_KEY_PREFIX "
            "the one last used?)"
        )
    records = []
    for number, (key, text) in enumerate(found, start=1):
        where_record = f"{where}, key {settings.key_prefix}{key}"
        fields = json_object(text)
        if fields is None:
            raise CliError(f"{where_record}: not a JSON object")
        records.append(parse_record(fields, "completed", where_record, number))
    return Records(records, summaries=0, skipped_lines=0)


def json_object(line: str) -> dict | None:
    """The JSON object on a line, after any log prefix; None if there is none."""
    line = _ANSI_ESCAPE.sub("", line)
    start = line.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(line[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_record(fields: dict, kind: str, where: str, line: int) -> Record:
    history = fields.get("history")
    if not (isinstance(history, list) and history and all(isinstance(h, str) for h in history)):
        raise CliError(f"{where}: a {kind} record without a history list")
    seq = _SEQ.fullmatch(history[0])
    if seq is None:
        raise CliError(f"{where}: a {kind} record whose history starts with {history[0]!r}")
    message_id = fields.get("broker_message_id")
    if not isinstance(message_id, str) or not message_id:
        raise CliError(f"{where}: a {kind} record without a broker_message_id")
    data = fields.get("data")
    if not isinstance(data, dict):
        raise CliError(f"{where}: a {kind} record without its data timestamps")
    stages = tuple(history[1:])
    times = {}
    for name in ("created_at", *stages, "completed_at"):
        value = data.get(name)
        if not is_time(value):
            raise CliError(f"{where}: a {kind} record without a time for {name!r} in its data")
        times[name] = float(value)
    run_id = fields.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        raise CliError(f"{where}: a {kind} record whose run_id is not text")
    key = fields.get("key")
    if key is not None and not isinstance(key, str):
        raise CliError(f"{where}: a {kind} record whose key is not text")
    return Record(kind, int(seq.group(1)), message_id, stages, times, line, run_id, key)


def is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Run:
    """The records of one run of `first`, and when it started (its first `created_at`)."""

    run_id: str | None
    records: list[Record]
    started_at: float


def runs(records: list[Record]) -> list[Run]:
    """The records grouped by run, oldest run first."""
    groups: dict[str | None, list[Record]] = {}
    for record in records:
        groups.setdefault(record.run_id, []).append(record)
    found = [Run(key, group, min(r.created_at for r in group)) for key, group in groups.items()]
    return sorted(found, key=lambda run: run.started_at)
