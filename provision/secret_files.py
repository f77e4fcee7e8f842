"""A secret file written whole or not at all, readable by its reader alone from the start; and a
secret kept across starts unless the operator sets or rotates it."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, text: str, *, owner: int | None = None) -> None:
    """Write `text` to `path` (whole, or not at all), readable by `owner` alone (when run as
    root, as in compose), or by anyone in the container that mounts it (no owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)  # left by a write that died: made again, never reused
    # Created with its final mode: not readable by anyone else for a moment first.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    if owner is None:
        temporary.chmod(0o444)
    elif os.geteuid() == 0:
        os.chown(temporary, owner, owner)
    temporary.replace(path)


def keep_or_make(path: Path, given: str, rotating: bool, make: str, owner: int) -> str | None:
    """The secret at `path`: `given` (from .env) if set, else the one kept there (unless
    rotating), else `make`, written there if it changed; None when it is what was there."""
    previous = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    value = given or ("" if rotating else previous) or make
    if value == previous:
        return None
    write_secret(path, value + "\n", owner=owner)
    return value
