"""The report as a figure: finishing order, a sample of messages' paths, latency per stage.

Needs matplotlib (in requirements-dev.txt, not in the images); `tools.report` imports this
module only for `--plot`. The Agg backend draws without a display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: draw to files, never to a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.patches import Patch

from tools.cli import CliError
from tools.report.analysis import END_TO_END, LAST_STAGE, Analysis
from tools.report.ordering import KeyOrdering

TIMELINE_SAMPLE = 40
KEY_ROWS = 24  # keys drawn in the per-key panel: enough for the demo's KEYS=20
STAGE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
LAST_COLOUR = "#7f7f7f"
END_TO_END_COLOUR = "#222222"


def check_target(path: Path) -> None:
    """Fail before any work if the figure could not be saved as `path` asks."""
    if not path.parent.is_dir():
        raise CliError(f"--plot {path}: there is no directory {path.parent}")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        raise CliError(f"--plot {path}: matplotlib cannot write {path.suffix} files; use .png")


def draw(analysis: Analysis, path: Path) -> None:
    if not analysis.completions:
        raise CliError("nothing to draw: the records hold no completed message")
    colours = stage_colours(analysis)
    by_key = analysis.key_ordering
    figure = plt.figure(figsize=(12, 9.5 if by_key is None else 13), layout="constrained")
    rows = 2 if by_key is None else 3
    grid = figure.add_gridspec(rows, 2, height_ratios=(1, 1.15, 0.8)[:rows])
    draw_order(figure.add_subplot(grid[0, 0]), analysis)
    draw_latencies(figure.add_subplot(grid[0, 1]), analysis, colours)
    draw_timeline(figure.add_subplot(grid[1, :]), analysis, colours)
    if by_key is not None:
        draw_key_order(figure.add_subplot(grid[2, :]), analysis, by_key)
    end_to_end = analysis.percentiles(END_TO_END)
    rate = f", {analysis.throughput:.1f} messages/s" if analysis.throughput else ""
    figure.suptitle(
        f"RabbitHoleMQ run: {len(analysis.completions)} messages{rate}, end to end "
        f"p50 {end_to_end['p50']:.1f} s, p95 {end_to_end['p95']:.1f} s",
        fontsize=14,
        fontweight="bold",
    )
    try:
        figure.savefig(path, dpi=90)
    except OSError as error:
        raise CliError(f"cannot write the figure to {path} ({error.strerror})") from None
    finally:
        plt.close(figure)


def stage_colours(analysis: Analysis) -> dict[str, str]:
    stages = [s for s in analysis.latencies if s not in (LAST_STAGE, END_TO_END)]
    colours = {s: STAGE_COLOURS[i % len(STAGE_COLOURS)] for i, s in enumerate(stages)}
    return {**colours, LAST_STAGE: LAST_COLOUR, END_TO_END: END_TO_END_COLOUR}


def draw_order(axes: Axes, analysis: Analysis) -> None:
    """(a) Place in completion order against sequence number; the diagonal is perfect order."""
    seqs = [r.seq for r in analysis.completions]
    places = range(1, len(seqs) + 1)
    highest, late = float("-inf"), []
    for seq in seqs:
        late.append(seq < highest)
        highest = max(highest, seq)
    axes.plot(sorted(seqs), places, color="#bbbbbb", linewidth=1, label="perfect sequence order")
    kinds = ((False, "#1f77b4", "in order"), (True, "#d62728", "late (after a higher seq-N)"))
    for is_late, colour, label in kinds:
        points = [(s, p) for s, p, x in zip(seqs, places, late, strict=True) if x == is_late]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.scatter(xs, ys, s=10, color=colour, label=f"finished {label}", zorder=3)
    order = analysis.ordering
    tau = f"Kendall's tau {order.tau:.3f}\n" if order.tau is not None else ""
    axes.text(
        0.03,
        0.97,
        f"{tau}{order.out_of_sequence} of {order.count} late\n"
        f"largest displacement {order.largest_displacement} places",
        transform=axes.transAxes,
        va="top",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#cccccc"},
    )
    axes.set_title("(a) Finishing order against sequence number")
    axes.set_xlabel("sequence number (seq-N)")
    axes.set_ylabel("place in completion order")
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(alpha=0.3)


def draw_key_order(axes: Axes, analysis: Analysis, by_key: KeyOrdering) -> None:
    """(d) Each key's completions over time, a row per key: red where a completion came after a
    later message (higher seq-N) of the same key."""
    keys = sorted({r.key for r in analysis.completions if r.key is not None}, key=natural)
    shown = keys[:KEY_ROWS]
    row_of = {key: row for row, key in enumerate(shown)}
    start = min(r.created_at for r in analysis.completions)
    highest: dict[str, int] = {}
    points: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
    for record in analysis.completions:
        if record.key is None:
            continue
        late = record.seq < highest.get(record.key, -1)
        highest[record.key] = max(highest.get(record.key, -1), record.seq)
        if record.key in row_of:
            points[late].append((record.completed_at - start, row_of[record.key]))
    for late, colour, label in ((False, "#1f77b4", "in key order"), (True, "#d62728", "late")):
        if points[late]:
            xs, ys = zip(*points[late], strict=True)
            axes.scatter(xs, ys, s=8 if not late else 18, color=colour, label=label, zorder=3)
    axes.set_yticks(range(len(shown)), shown, fontsize="x-small")
    axes.invert_yaxis()
    more = f" (first {len(shown)} of {len(keys)} keys)" if len(keys) > len(shown) else ""
    axes.set_title(
        f"(d) Per-key order{more}: {by_key.total} completions out of their key's order, in "
        f"{by_key.keys_affected} of {by_key.keys} keys"
    )
    axes.set_xlabel("seconds since the first message was created (a dot: a message completed)")
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(axis="x", alpha=0.3)


def natural(key: str) -> tuple[str, int]:
    """key-2 before key-10."""
    head, _, tail = key.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (key, -1)


def draw_latencies(axes: Axes, analysis: Analysis, colours: dict[str, str]) -> None:
    """(b) Each stage's latency as a box (quartiles, whiskers p5 to p95), p99 and max marked."""
    stages = [s for s in analysis.latencies if analysis.latencies[s]]
    boxes = axes.boxplot(
        [analysis.latencies[s] for s in stages],
        orientation="horizontal",
        whis=(5, 95),
        showfliers=False,
        patch_artist=True,
        widths=0.6,
        medianprops={"color": "white", "linewidth": 2},
    )
    for patch, stage in zip(boxes["boxes"], stages, strict=True):
        patch.set_facecolor(colours[stage])
    for row, stage in enumerate(stages, start=1):
        figures = analysis.percentiles(stage)
        axes.plot(figures["p99"], row, marker="|", markersize=14, color="#333333")
        axes.plot(figures["max"], row, marker="x", color="#333333")
        axes.annotate(
            f"p50 {figures['p50']:.2f} s",
            (figures["max"], row),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    axes.set_yticks(range(1, len(stages) + 1), stages)
    axes.invert_yaxis()
    axes.set_xlim(left=0, right=axes.get_xlim()[1] * 1.18)
    axes.set_title("(b) Latency per stage: waiting in its queue + working")
    axes.set_xlabel("seconds (box: quartiles; whiskers: p5 to p95; |: p99; x: max)")
    axes.grid(axis="x", alpha=0.3)


def draw_timeline(axes: Axes, analysis: Analysis, colours: dict[str, str]) -> None:
    """(c) A sample of messages, evenly spread over sequence order, each a bar per stage."""
    by_seq = sorted(analysis.completions, key=lambda r: r.seq)
    count = min(TIMELINE_SAMPLE, len(by_seq))
    step = (len(by_seq) - 1) / (count - 1) if count > 1 else 0
    sample = [by_seq[round(i * step)] for i in range(count)]
    start = min(r.created_at for r in analysis.completions)
    for row, record in enumerate(sample):
        previous = record.created_at
        for stage in (*record.stages, LAST_STAGE):
            stamp = record.completed_at if stage == LAST_STAGE else record.times[stage]
            axes.barh(
                row, stamp - previous, left=previous - start, height=0.7, color=colours[stage]
            )
            previous = stamp
    axes.set_yticks(range(count), [f"seq-{r.seq}" for r in sample], fontsize="x-small")
    axes.invert_yaxis()
    axes.set_title(
        f"(c) The path of {count} of {len(by_seq)} messages through the stages "
        "(each bar: waiting in that stage's queue, then working)"
    )
    axes.set_xlabel("seconds since the first message was created")
    axes.grid(axis="x", alpha=0.3)
    legend = [Patch(color=colours[s], label=s) for s in colours if s != END_TO_END]
    axes.legend(handles=legend, loc="upper right", title="stage")
