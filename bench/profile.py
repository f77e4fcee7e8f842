"""Hot spots from a py-spy recording (`py-spy record --format raw`: one `f1;f2;...;fn COUNT`
line per distinct stack, each frame `function (file:line)`; idle threads are not sampled).

For a process of this project the samples are also split by thread: the I/O thread (pika's
IOLoop: receiving, publishing, confirms, acks) against the worker threads (decoding,
validating, the handler). The I/O thread is one thread for the whole process, so its share of
the run's wall time is how close the process is to its ceiling.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 200  # per second, as bench.runs starts py-spy
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?):(?P<line>\d+)\)$")
PROJECT_DIRS = ("common/", "service/", "last/", "first/", "bench/")


def _split(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return match["function"], match["file"]


def area(file: str) -> str:
    """Which code a frame belongs to, in a few coarse buckets."""
    short = file.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    if short.startswith(PROJECT_DIRS):
        return "this project (" + short.split("/", 1)[0] + "/)"
    top = short.split("/", 1)[0] if "/" in short else short.removesuffix(".py")
    if top == "pika":
        return "pika"
    if top in ("json", "logging", "pythonjsonlogger", "uuid", "re"):
        return top
    if top in ("threading", "queue"):
        return "threading / queue"
    if top in ("socket", "selectors", "ssl"):
        return "socket / select"
    return "other"


def thread_kind(frames: list[str]) -> str:
    text = ";".join(frames)
    if "IOLoop.start" in text or "ioloop.start" in text.lower():
        return "I/O thread"
    if "_worker" in text:
        return "worker threads"
    return "other threads"


@dataclass
class Profile:
    name: str
    samples: int = 0
    by_thread: Counter[str] = field(default_factory=Counter)
    by_area: Counter[str] = field(default_factory=Counter)  # self time of the leaf frame
    self_time: Counter[str] = field(default_factory=Counter)  # function (file)
    inclusive: Counter[str] = field(default_factory=Counter)  # function (file), once a stack

    def share(self, count: int) -> str:
        return f"{100 * count / self.samples:.0f}%" if self.samples else "-"

    def busy(self, thread: str, seconds: float) -> float:
        """Fraction of `seconds` of wall time during which `thread` was sampled busy."""
        return self.by_thread[thread] / SAMPLE_RATE / seconds if seconds > 0 else 0.0


def read(path: Path, name: str) -> Profile:
    profile = Profile(name)
    if not path.exists():
        return profile
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        profile.samples += count
        profile.by_thread[thread_kind(frames)] += count
        function, file = _split(frames[-1])
        profile.by_area[area(file)] += count
        profile.self_time[f"{function} ({file})"] += count
        for key in {"{} ({})".format(*_split(frame)) for frame in frames}:
            profile.inclusive[key] += count
    return profile


def project_functions(profile: Profile, top: int) -> list[tuple[str, int]]:
    """The most inclusive functions of this project's own code (below the thread entry)."""
    skip = ("serve.<locals>.target", "Consumer.run ", "ReconnectingConnection.run ", "<module>")
    rows = [
        (key, count)
        for key, count in profile.inclusive.most_common()
        if any(f"({d}" in key for d in PROJECT_DIRS) and not key.startswith(skip)
    ]
    return rows[:top]


def markdown(profile: Profile, seconds: float, top: int = 10) -> list[str]:
    """The profile as markdown lines for docs/benchmarks.md."""
    if not profile.samples:
        return [f"`{profile.name}`: no samples (py-spy missing or not permitted)."]
    lines = [
        f"**`{profile.name}`**: {profile.samples:,} samples at {SAMPLE_RATE}/s over a "
        f"{seconds:.1f} s run (busy threads only).",
        "",
        "- threads: "
        + ", ".join(
            f"{kind} {profile.share(count)} of samples (busy {profile.busy(kind, seconds):.0%} "
            "of the run)"
            for kind, count in profile.by_thread.most_common()
        ),
        "- self time by code: "
        + ", ".join(f"{name} {profile.share(n)}" for name, n in profile.by_area.most_common()),
        "",
        "| self | function (where the CPU is) | | inclusive | this project's function |",
        "|---:|---|---|---:|---|",
    ]
    selfs = profile.self_time.most_common(top)
    owns = project_functions(profile, top)
    for index in range(max(len(selfs), len(owns))):
        left = ("", "")
        right = ("", "")
        if index < len(selfs):
            left = (profile.share(selfs[index][1]), f"`{selfs[index][0]}`")
        if index < len(owns):
            right = (profile.share(owns[index][1]), f"`{owns[index][0]}`")
        lines.append(f"| {left[0]} | {left[1]} | | {right[0]} | {right[1]} |")
    return lines
