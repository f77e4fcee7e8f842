"""`python -m tests.faults.reliability ROWS DOC`: the fault rows into docs/reliability.md.

`make reliability` runs the scenarios with RELIABILITY_REPORT set, so that each appends its row
(`harness.pipeline.report`) as a JSON line, then renders them here.
"""

from __future__ import annotations

import json
import os
import sys
import time

COLUMNS = ("messages", "lost", "duplicates_delivered", "duplicates_logged", "dead_lettered")


def render(rows: list[dict]) -> str:
    """The Markdown table of docs/reliability.md."""
    lines = [
        "| scenario | messages | lost | duplicates delivered | duplicates logged "
        "| dead-lettered | time (s) | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        figures = " | ".join(str(row[column]) for column in (*COLUMNS, "seconds"))
        lines.append(f"| {row['scenario']} | {figures} | {row.get('notes', '')} |")
    return "\n".join(lines) + "\n"


def update_document(rows_path: str, document_path: str) -> None:
    """Replace the table between the markers in docs/reliability.md with a run's rows."""
    begin, end = "<!-- begin table -->\n", "<!-- end table -->"
    with open(rows_path) as source:
        rows = [json.loads(line) for line in source]
    with open(document_path) as document:
        text = document.read()
    head, rest = text.split(begin)
    tail = rest.split(end)[1]
    run = f"Run of {time.strftime('%Y-%m-%d')}, on {os.cpu_count()} cores.\n\n"
    with open(document_path, "w") as document:
        document.write(head + begin + run + render(rows) + end + tail)


if __name__ == "__main__":
    update_document(sys.argv[1], sys.argv[2])
