"""The HTTP pipeline's processes for real on 127.0.0.1 (no broker): the report reads its
`last`'s records, a bad message is refused with the broker pipeline's reason, a stop drains,
and a bad setting ends in one line."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from common.topology import STAGES
from harness.http_run import HttpPipelineRun
from harness.processes import Launcher
from tests.unit.test_report import run_report


@pytest.fixture
def launcher(tmp_path: Path):
    launcher = Launcher(tmp_path, LOG_FORMAT="json")
    yield launcher
    launcher.kill_all()


def test_the_report_reads_the_http_lasts_records(launcher: Launcher, tmp_path: Path) -> None:
    count = 40
    results = tmp_path / "results.jsonl"
    run = HttpPipelineRun(launcher, count)
    run.start_last(RESULTS_FILE=results)
    for stage in STAGES:
        run.start_stage(stage, RANDOM_WAIT_MAX=0.01)
    run.wait_until_serving()
    first = run.start_first(PUBLISH_RATE=200)
    assert first.wait(60) == 0, first.tail()
    [sent] = first.messages("sent")
    assert (sent["accepted"], sent["failed"], sent["total"]) == (count, 0, count)

    last = run.lasts[0]
    last.signal(signal.SIGTERM)  # as `docker compose stop`: drain, summary, exit 0
    assert last.wait(30) == 0, last.tail()
    [summary] = last.messages("summary")
    assert (summary["completed"], summary["duplicates"]) == (count, 0)
    report = run_report(results)
    assert report.returncode == 0, report.stderr
    assert "completed              40" in report.stdout
    for stage in (*STAGES, "end to end"):
        assert f"  {stage} " in report.stdout


def test_a_bad_message_is_refused_with_its_reason(launcher: Launcher) -> None:
    run = HttpPipelineRun(launcher, 0)
    stage = run.start_stage("service_a")
    run.wait_until_serving()
    body = json.dumps({"history": ["seq-1", 7], "message_id": "m", "data": {"created_at": 1}})
    request = urllib.request.Request(
        run.url("http_service_a"),
        data=body.encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": "m"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    reason = "body items must be strings of 1 to 128 characters"
    assert json.load(refused.value) == {"error": reason}
    [record] = stage.messages("message refused")
    assert record["reason"] == reason and record["level"] == "WARNING"


@pytest.mark.parametrize(
    ("module", "env", "words"),
    [
        ("http_pipeline.service", {}, "NEXT_URL='' is not valid: the URL of the stage after"),
        ("http_pipeline.first", {"NEXT_URL": "ftp://x"}, "NEXT_URL='ftp://x' is not valid"),
        ("http_pipeline.last", {"HTTP_BIND": "8000"}, "HTTP_BIND='8000' is not valid: host:port"),
        ("http_pipeline.last", {"RESULTS_FILE": "/nonexistent/r.jsonl"}, "RESULTS_FILE="),
        ("http_pipeline.service", {"STAGE": "service_x"}, "STAGE='service_x' is not valid"),
    ],
)
def test_a_bad_setting_is_one_line(launcher: Launcher, module: str, env: dict, words: str) -> None:
    proc = launcher(module, **env)
    assert proc.wait(30) == 2
    [line] = proc.stderr().splitlines()
    assert line.startswith("configuration error: ") and words in line, line
