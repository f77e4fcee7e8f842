"""`python -m tools.report`: its figures against a hand-made run with known answers, its input
forms (RESULTS_FILE, `docker compose logs last`), its errors, and the PNG it draws."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.topology import STAGES
from harness.processes import ROOT
from tools.report.analysis import Analysis, analyse
from tools.report.ordering import (
    KeyOrdering,
    count_inversions,
    kendall_tau,
    key_ordering,
    ordering,
)
from tools.report.records import read_records

# Five messages, each (seq, created_at, service_a, service_b, service_c, completed_at). Times are
# binary fractions, so every difference below is exact.
RUN = [
    (1, 1000.0, 1001.0, 1003.0, 1004.0, 1004.5),
    (2, 1000.0, 1000.5, 1001.0, 1002.0, 1002.25),
    (3, 1000.0, 1002.0, 1005.0, 1006.0, 1007.0),
    (4, 1001.0, 1001.5, 1002.0, 1003.0, 1003.5),
    (5, 1001.0, 1004.0, 1004.5, 1005.5, 1006.0),
]
# Completion order, by completed_at: seq 2, 4, 1, 5, 3.
#  out of sequence: 1 (after 4) and 3 (after 5)                              -> 2
#  inversions: (2,1) (4,1) (4,3) (5,3)                                       -> 4
#  tau = (pairs - 2 * inversions) / pairs = (10 - 8) / 10                    -> 0.2
#  places, sequence -> completion: 1->3 2->1 3->5 4->2 5->4                  -> largest 2 (seq-1)
#  stage latencies, nearest-rank p50 of 5 values is the 3rd, p95 and p99 the 5th:
#   service_a 1, 0.5, 2, 0.5, 3       -> 0.5 0.5 [1] 2 [3]
#   service_b 2, 0.5, 3, 0.5, 0.5     -> 0.5 0.5 [0.5] 2 [3]
#   service_c 1, 1, 1, 1, 1
#   last      0.5, 0.25, 1, 0.5, 0.5  -> 0.25 0.5 [0.5] 0.5 [1]
#   end to end 4.5, 2.25, 7, 2.5, 5   -> 2.25 2.5 [4.5] 5 [7]
#  throughput: 5 messages from 1000.0 (first created) to 1007.0 (last completed) -> 5/7 per s
EXPECTED_PERCENTILES = {
    "service_a": (1.0, 3.0, 3.0, 3.0),
    "service_b": (0.5, 3.0, 3.0, 3.0),
    "service_c": (1.0, 1.0, 1.0, 1.0),
    "last": (0.5, 1.0, 1.0, 1.0),
    "end to end": (4.5, 7.0, 7.0, 7.0),
}


def record(message: str, seq: int, *times: float, message_id: str | None = None) -> dict:
    created, *stamps, completed = times
    data = {"created_at": created, **dict(zip(STAGES, stamps, strict=True))}
    return {
        "message": message,
        "history": [f"seq-{seq}", *STAGES],
        "broker_message_id": message_id or f"id-{seq}",
        "data": {**data, "updated_at": stamps[-1], "completed_at": completed},
    }


def results_records() -> list[dict]:
    """The run as RESULTS_FILE holds it, written by two `last` processes (so not in time order),
    with a `duplicate` record and a second `completed` one for an id already completed."""
    records = [record("completed", *RUN[i]) for i in (0, 2, 4, 1, 3)]
    records.insert(2, record("duplicate", 4, 1001.0, 1001.5, 1002.0, 1003.0, 1008.0))
    records.append(record("completed", 2, 1000.0, 1000.5, 1001.0, 1002.0, 1009.0))
    records.append({"message": "summary", "completed": 5, "duplicates": 2})
    return records


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "results.jsonl", [json.dumps(r) for r in results_records()])


@pytest.fixture
def compose_log(tmp_path: Path) -> Path:
    """The same records as `docker compose logs last` shows them, with the other log lines."""
    prefixes = ["last-1  | ", "\x1b[36mlast-2  | \x1b[0m", "last_1  | "]  # v2, coloured, v1
    lines = [
        'last-1  | {"asctime": "2026-11-26 20:33:30,001", "level": "INFO", "logger": '
        '"common.connection", "message": "connected", "url": "amqp://rabbithole:***@rabbitmq"}',
        "last-1  | configuration error: this line is not JSON",
    ]
    for prefix, fields in zip(itertools.cycle(prefixes), results_records(), strict=False):
        log_fields = {"asctime": "2026-11-26 20:33:37,098", "level": "INFO", "logger": "last"}
        lines.append(prefix + json.dumps({**log_fields, **fields}))
    lines.append('last-1  | {"message": "progress", "done": 3, "expected": null}')
    lines.append('last-1  | {"message": "completed", "history": ["seq-9"')  # cut short by a kill
    return write_lines(tmp_path / "last.log", lines)


def run_report(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.report", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("python -m tools.report: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


# -- the figures -----------------------------------------------------------------------------


def test_known_answers(results_file: Path) -> None:
    records = read_records(results_file)
    assert (len(records.records), records.summaries, records.skipped_lines) == (7, 1, 0)
    analysis = analyse(records.records)

    assert [r.seq for r in analysis.completions] == [2, 4, 1, 5, 3]
    assert len(analysis.completions) == 5
    assert analysis.duplicates == 2
    order = analysis.ordering
    assert order.out_of_sequence == 2
    assert order.largest_displacement == 2
    assert order.most_displaced == (1, 1, 3)
    assert order.tau == pytest.approx(0.2)
    assert list(analysis.latencies) == [*STAGES, "last", "end to end"]
    for stage, expected in EXPECTED_PERCENTILES.items():
        assert tuple(analysis.percentiles(stage).values()) == expected, stage
    assert analysis.elapsed == 7.0
    assert analysis.throughput == pytest.approx(5 / 7)


def test_the_printed_report(results_file: Path) -> None:
    result = run_report(results_file)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "completed              5\n" in out
    assert "duplicates             2\n" in out
    assert "dead-lettered          unknown: not in last's records" in out
    assert "out of sequence        2 of 5 finished after a message with a higher sequence" in out
    assert "largest displacement   2 places (seq-1: place 1 in sequence order, finished in " in out
    assert "Kendall's tau          0.200: finishing order little related to sequence" in out
    assert "stage             p50      p95      p99      max\n" in out
    assert "service_a       1.000    3.000    3.000    3.000\n" in out
    assert "service_b       0.500    3.000    3.000    3.000\n" in out
    assert "last            0.500    1.000    1.000    1.000\n" in out
    assert "end to end      4.500    7.000    7.000    7.000\n" in out
    assert "throughput               0.71 messages/s: 5 messages in 7.0 s, first created " in out


def test_the_latest_run_is_reported_and_the_others_listed(tmp_path: Path) -> None:
    """`first` ran twice: the same sequence numbers again, under another run_id, later."""
    earlier = [{**r, "run_id": "run-1"} for r in results_records()]
    later = [
        {**record("completed", seq, *(t + 100 for t in times)), "run_id": "run-2"}
        for seq, *times in RUN[:3]
    ]
    lines = [json.dumps(r) for r in [*earlier, *later]]
    path = write_lines(tmp_path / "two-runs.jsonl", lines)

    result = run_report(path)
    assert result.returncode == 0, result.stderr
    assert "\nrun run-2 (3 records, started " in result.stdout
    others = "other runs in the file (--run ID for one of them):\n  run-1 (7 records"
    assert others in result.stdout
    assert "completed              3\n" in result.stdout
    assert "repeat" not in result.stdout  # no sequence number repeats within one run

    result = run_report(path, "--run", "run-1")
    assert result.returncode == 0, result.stderr
    assert "\nrun run-1 (7 records, started " in result.stdout
    assert "completed              5\n" in result.stdout
    assert "duplicates             2\n" in result.stdout


def test_an_unknown_run(results_file: Path) -> None:
    assert_one_line_error(
        run_report(results_file, "--run", "nope"),
        2,
        "no run 'nope' in the records; they hold (no run_id) (7 records, started ",
    )


def figures(analysis: Analysis) -> tuple:
    """Everything the report shows (records' line numbers aside, which differ by file)."""
    seqs = [r.seq for r in analysis.completions]
    return seqs, analysis.duplicates, analysis.ordering, analysis.latencies, analysis.elapsed


def test_compose_logs_give_the_same_figures(results_file: Path, compose_log: Path) -> None:
    from_logs = read_records(compose_log)
    assert (from_logs.summaries, from_logs.skipped_lines) == (1, 4)
    assert figures(analyse(from_logs.records)) == figures(
        analyse(read_records(results_file).records)
    )
    printed = run_report(compose_log).stdout
    assert "other lines skipped" in printed
    assert printed.split("\n", 1)[1] == run_report(results_file).stdout.split("\n", 1)[1]


def test_percentiles_of_a_larger_run(tmp_path: Path) -> None:
    """200 messages whose service_b latencies are 1.001 to 1.2 s: p50, p95, p99 and max differ."""
    lines = []
    for seq in range(1, 201):
        b = 2.0 + seq / 1000
        lines.append(json.dumps(record("completed", seq, 0.0, 1.0, b, b + 1, b + 2)))
    analysis = analyse(read_records(write_lines(tmp_path / "r.jsonl", lines)).records)
    figures = analysis.percentiles("service_b")
    assert figures == pytest.approx({"p50": 1.1, "p95": 1.19, "p99": 1.198, "max": 1.2})
    assert analysis.ordering.out_of_sequence == 0
    assert analysis.ordering.tau == 1.0
    assert analysis.ordering.most_displaced is None


def test_equal_completion_times_keep_the_file_order(tmp_path: Path) -> None:
    lines = [json.dumps(record("completed", seq, 0.0, 1.0, 2.0, 3.0, 4.0)) for seq in (3, 1, 2)]
    analysis = analyse(read_records(write_lines(tmp_path / "r.jsonl", lines)).records)
    assert [r.seq for r in analysis.completions] == [3, 1, 2]


# -- ordering ----------------------------------------------------------------------------------


def brute_force_tau_b(values: list[int]) -> float | None:
    pairs = list(itertools.combinations(values, 2))
    concordant = sum(a < b for a, b in pairs)
    discordant = sum(a > b for a, b in pairs)
    untied = concordant + discordant
    return None if untied == 0 else (concordant - discordant) / math.sqrt(untied * len(pairs))


@given(st.lists(st.integers(0, 30), max_size=60))
def test_inversions_and_tau_match_brute_force(values: list[int]) -> None:
    assert count_inversions(values) == sum(a > b for a, b in itertools.combinations(values, 2))
    expected = brute_force_tau_b(values)
    assert kendall_tau(values) == (None if expected is None else pytest.approx(expected))


def test_tau_of_sorted_and_reversed_orders() -> None:
    assert kendall_tau(list(range(100))) == 1.0
    assert kendall_tau(list(range(100, 0, -1))) == -1.0
    assert kendall_tau([7]) is None


def test_repeated_sequence_numbers_are_noted() -> None:
    """`first` run twice: seq-1 twice. Equal numbers are in order with each other."""
    order = ordering([1, 2, 1, 2])
    assert order.repeated_seqs == 2
    assert order.out_of_sequence == 1
    assert order.largest_displacement == 1


# -- errors ------------------------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run_report(tmp_path / "nope.jsonl"), 2, "nope.jsonl: no such file")


def test_an_empty_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "empty.log", ["", "  "])
    assert_one_line_error(run_report(path), 2, "empty.log is empty")


def test_a_file_of_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(bytes(range(256)) * 10 + b"\n{not json\n[1, 2]\n")
    assert_one_line_error(run_report(path), 2, "none of its", "completed or duplicate record")


def test_a_text_format_log(tmp_path: Path) -> None:
    line = "2026-11-26 20:33:37,098 INFO last: completed history=['seq-1', 'service_a']"
    path = write_lines(tmp_path / "text.log", [line])
    assert_one_line_error(run_report(path), 2, "LOG_FORMAT=json")


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        ({"history": "seq-1"}, "without a history list"),
        ({"history": ["job-1", "service_a"]}, "history starts with 'job-1'"),
        ({"broker_message_id": None}, "without a broker_message_id"),
        ({"data": None}, "without its data timestamps"),
        ({"data": {"created_at": 1.0, "completed_at": 2.0}}, "without a time for 'service_a'"),
    ],
)
def test_a_broken_record_names_its_line(tmp_path: Path, broken: dict, words: str) -> None:
    good = record("completed", 1, 0.0, 1.0, 2.0, 3.0, 4.0)
    path = write_lines(tmp_path / "r.jsonl", [json.dumps(good), json.dumps({**good, **broken})])
    assert_one_line_error(run_report(path), 2, "r.jsonl:2: a completed record", words)


def test_a_directory(tmp_path: Path) -> None:
    assert_one_line_error(run_report(tmp_path), 2, "cannot read it")


def test_a_reader_that_stops_early(results_file: Path) -> None:
    """`report | head -1`: the report ends quietly when its reader goes, with no traceback."""
    report = subprocess.Popen(
        [sys.executable, "-m", "tools.report", str(results_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert report.stdout is not None and report.stderr is not None
    report.stdout.close()  # the reader is gone before the first line is written
    stderr = report.stderr.read().decode()
    assert report.wait(60) == 141
    assert stderr == ""


def test_no_file_given() -> None:
    assert_one_line_error(run_report(), 2, "give either FILE or --store URL")


def test_a_bad_amqp_url(results_file: Path) -> None:
    result = run_report(results_file, "--amqp-url", "http://localhost")
    assert_one_line_error(result, 2, "--amqp-url='http://localhost' is not valid")


@pytest.mark.parametrize(
    ("host", "why"),
    [("127.0.0.1:1", "(Connection refused)"), ("no-such-host.invalid", "")],
)
def test_an_unreachable_broker_for_the_dead_letters(
    results_file: Path, host: str, why: str
) -> None:
    result = run_report(results_file, "--amqp-url", f"amqp://guest:secret@{host}/%2F")
    assert_one_line_error(result, 1, f"cannot ask the broker at amqp://guest:***@{host}/%2F", why)
    assert "secret" not in result.stderr


# -- dead letters, from the broker -------------------------------------------------------------


# -- the picture -------------------------------------------------------------------------------


def test_the_plot_is_a_png(results_file: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    out = tmp_path / "run.png"
    result = run_report(results_file, "--plot", out)
    assert result.returncode == 0, result.stderr
    assert f"figure written to {out}" in result.stdout
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _channels = image.imread(out).shape
    assert width > 800 and height > 600
    assert out.stat().st_size < 300_000


def keyed_records() -> list[dict]:
    """RUN's five messages under two keys: a = seq 1, 3, 5 and b = seq 2, 4. In completion order
    (2, 4, 1, 5, 3) key a completes 1, 5, 3: seq-3 after seq-5 is the one out of key order."""
    keys = {1: "a", 2: "b", 3: "a", 4: "b", 5: "a"}
    return [{**record("completed", *row), "key": keys[row[0]]} for row in RUN]


def test_per_key_order_is_counted() -> None:
    assert key_ordering([("a", 1), ("b", 2), ("a", 5), ("a", 3), ("b", 4)]) == KeyOrdering(
        keys=2, out_of_order={"a": 1, "b": 0}
    )
    assert key_ordering([("a", 1), ("a", 2), ("b", 1)]).total == 0


def test_the_printed_report_shows_per_key_order(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "keyed.jsonl", [json.dumps(r) for r in keyed_records()])
    result = run_report(path)
    assert result.returncode == 0, result.stderr
    assert "  keys                   2\n" in result.stdout
    assert "  out of key order       1 completions, in 1 of 2 keys" in result.stdout
    assert "  most out of order      a: 1\n" in result.stdout


def test_without_keys_the_report_says_so(results_file: Path) -> None:
    result = run_report(results_file)
    assert "keys                   none: the messages had no key" in result.stdout


def test_the_plot_has_a_per_key_panel_when_there_are_keys(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    path = write_lines(tmp_path / "keyed.jsonl", [json.dumps(r) for r in keyed_records()])
    plain, keyed = tmp_path / "plain.png", tmp_path / "keyed.png"
    unkeyed = write_lines(
        tmp_path / "plain.jsonl", [json.dumps(record("completed", *r)) for r in RUN]
    )
    assert run_report(unkeyed, "--plot", plain).returncode == 0
    assert run_report(path, "--plot", keyed).returncode == 0
    assert image.imread(keyed).shape[0] > image.imread(plain).shape[0]  # a row more


def test_the_plot_needs_matplotlib(results_file: Path, tmp_path: Path) -> None:
    """Without matplotlib, one line saying how to install it, and nothing drawn or printed."""
    hide = (
        "import runpy, sys; sys.modules['matplotlib'] = None; sys.argv[0] = 'report'; "
        "runpy.run_module('tools.report', run_name='__main__')"
    )
    out = tmp_path / "run.png"
    result = subprocess.run(
        [sys.executable, "-c", hide, str(results_file), "--plot", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(result, 2, "--plot needs matplotlib", "pip install")
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("no/such/dir.png", "there is no directory"),
        ("run.xyz", "matplotlib cannot write .xyz files; use .png"),
    ],
)
def test_a_plot_that_cannot_be_written(
    results_file: Path, tmp_path: Path, name: str, words: str
) -> None:
    pytest.importorskip("matplotlib")
    assert_one_line_error(run_report(results_file, "--plot", tmp_path / name), 2, words)


def test_a_plot_file_the_user_may_not_write(results_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "run.png"
    target.mkdir()  # a directory where the file should go: refused even to root
    result = run_report(results_file, "--plot", target)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"cannot write the figure to {target}" in result.stderr


def test_the_report_wants_a_file_or_a_store() -> None:
    for args in ((), ("some.log", "--store", "redis://localhost:6379/0")):
        result = run_report(*args)
        assert result.returncode == 2
        assert_one_line_error(result, 2, "give either FILE or --store URL")
    result = run_report("--store", "http://localhost")
    assert_one_line_error(result, 2, "--store='http://localhost' is not valid: a Redis URL")
