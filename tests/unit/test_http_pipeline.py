"""The HTTP pipeline's logic without a network: the wire format, idempotency keys, back-off,
the calls' retry rules, the WSGI app's answers, and a stage's handling of repeated calls."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from common.messages import InvalidMessage, Message
from common.settings import Env, SettingsError
from http_pipeline import client, wire
from http_pipeline import last as http_last
from http_pipeline.app import MessagesApp, Reply
from http_pipeline.client import BACKOFF_FIRST, BACKOFF_MAX, NextHop, Outcome, backoff
from http_pipeline.keys import Claim, IdempotencyKeys
from http_pipeline.service import StageHandler
from http_pipeline.settings import ServerSettings, next_url
from service.work import Stage, WorkSettings

URL = "http://127.0.0.1:9/messages"  # never connected to: every call here is faked


def stamped() -> Message:
    return Message.first(7, 100.0, "run-1").stamped("service_a", 101.5)


# -- the wire format ---------------------------------------------------------------------------


def test_a_message_survives_the_json_body() -> None:
    message = stamped()
    assert wire.decode(wire.encode(message)) == message
    assert json.loads(wire.encode(message)) == {
        "history": ["seq-7", "service_a"],
        "message_id": message.message_id,
        "run_id": "run-1",
        "key": None,
        "data": {"created_at": 100.0, "service_a": 101.5, "updated_at": 101.5},
    }


def test_a_message_without_run_id_is_valid() -> None:
    message = Message.first(1, 5.0)
    assert wire.decode(wire.encode(message)).run_id is None


def test_a_key_travels_as_well() -> None:
    message = Message.first(1, 5.0, key="key-1")
    assert wire.decode(wire.encode(message)).key == "key-1"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{nope", "request body is not JSON"),
        (b"\xff\xfe", "request body is not JSON"),
        (b'["seq-1"]', "request body must be a JSON object with history, message_id, data"),
        (b'{"history": ["seq-1"], "data": {}}', "request body must be a JSON object with"),
        (
            b'{"history": ["x"], "message_id": "m", "data": {"created_at": 1}}',
            "body must start with 'seq-<n>', got 'x'",
        ),
        (
            b'{"history": ["seq-1"], "message_id": "m", "data": {}}',
            "header 'data' has no 'created_at'",
        ),
        (
            b'{"history": ["seq-1"], "message_id": 5, "data": {"created_at": 1}}',
            "message_id (broker_message_id) is missing or not printable text",
        ),
    ],
)
def test_a_bad_body_is_refused_with_the_broker_pipelines_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match="^" + re.escape(reason)):
        wire.decode(body)


def test_an_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidMessage, match="over 16384"):
        wire.decode(b" " * (wire.MAX_REQUEST_BYTES + 1))


def test_the_deadline_header() -> None:
    assert wire.deadline(None, 42.0) == 42.0
    assert wire.deadline("30.5", 42.0) == 30.5
    assert wire.deadline("1e300", 42.0) == 42.0  # no caller holds a thread past the stage's own
    for bad in ("soon", "nan", "inf", ""):
        with pytest.raises(InvalidMessage, match="Request-Deadline"):
            wire.deadline(bad, 42.0)


# -- idempotency keys ------------------------------------------------------------------------


def test_a_key_is_new_then_in_progress_then_done() -> None:
    keys = IdempotencyKeys()
    assert keys.claim("m") is Claim.NEW
    assert keys.claim("m") is Claim.IN_PROGRESS
    keys.finish("m", done=True)
    assert keys.claim("m") is Claim.DONE
    assert keys.claim("other") is Claim.NEW


def test_a_failed_claim_is_released_for_a_later_try() -> None:
    keys = IdempotencyKeys()
    assert keys.claim("m") is Claim.NEW
    keys.finish("m", done=False)
    assert keys.claim("m") is Claim.NEW


def test_keys_are_remembered_up_to_a_bound_oldest_forgotten_first() -> None:
    keys = IdempotencyKeys(remembered=2)
    for key in ("a", "b", "c"):
        keys.claim(key)
        keys.finish(key, done=True)
    assert [keys.claim(key) for key in ("b", "c")] == [Claim.DONE, Claim.DONE]
    assert keys.claim("a") is Claim.NEW


def test_of_concurrent_claims_exactly_one_wins() -> None:
    keys = IdempotencyKeys()
    barrier = threading.Barrier(20)
    claims: list[Claim] = []

    def claim() -> None:
        barrier.wait()
        claims.append(keys.claim("m"))

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.value for c in claims) == ["in progress"] * 19 + ["new"]


# -- back-off and retries ----------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    caps = [backoff(attempt, uniform=lambda low, high: high) for attempt in range(1, 10)]
    assert caps[:3] == [BACKOFF_FIRST, 2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST]
    assert max(caps) == BACKOFF_MAX == caps[-1]
    assert {backoff(n, uniform=lambda low, high: low) for n in range(1, 10)} == {0.0}
    assert all(0 <= backoff(3) <= 4 * BACKOFF_FIRST for _ in range(100))


class FakeResponse:
    def __init__(self, status: int, fields: dict) -> None:
        self.status = status
        self.data = json.dumps(fields).encode()


class FakePool:
    """Answers `urlopen` from a script: a response, or an exception to raise."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.calls: list[dict] = []

    def urlopen(self, method: str, url: str, **kwargs: object) -> FakeResponse:
        self.calls.append({"method": method, "url": url, **kwargs})
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


def hop(*script: object) -> tuple[NextHop, FakePool]:
    next_hop = NextHop(URL, connections=1)
    pool = FakePool(*script)
    next_hop._pool = pool
    return next_hop, pool


REFUSED = NewConnectionError(None, "Failed to establish a new connection: refused")
BROKEN = ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))


def test_a_call_is_retried_through_refused_and_broken_connections_and_409() -> None:
    next_hop, pool = hop(REFUSED, BROKEN, FakeResponse(409, {"error": "in progress"}))
    pool.script.append(FakeResponse(200, {"status": "done"}))
    message = stamped()
    assert next_hop.deliver(message, time.time() + 10) == Outcome(True, 4)
    for call in pool.calls:  # the same request each time, keyed by the message id
        assert call["body"] == wire.encode(message)
        assert call["headers"][wire.IDEMPOTENCY_KEY] == message.message_id
        assert call["retries"] is False
        assert call["url"] == "/messages"


@pytest.mark.parametrize("status", [400, 500, 502, 504])
def test_an_error_answer_is_final(status: int) -> None:
    next_hop, pool = hop(FakeResponse(status, {"error": "no"}))
    outcome = next_hop.deliver(stamped(), time.time() + 10)
    assert outcome == Outcome(False, 1, f"{status} no", status)
    assert len(pool.calls) == 1


def test_retries_end_at_the_deadline_and_each_attempt_waits_only_for_what_is_left() -> None:
    next_hop, pool = hop(*[REFUSED] * 1000)
    deadline = time.time() + 0.5
    outcome = next_hop.deliver(stamped(), deadline)
    assert time.time() - deadline < 1.0  # one short last attempt at most, on a busy machine
    assert not outcome.ok and outcome.status is None
    assert outcome.reason.startswith(f"deadline passed after {outcome.attempts} attempts: cannot")
    reads = [call["timeout"].read_timeout for call in pool.calls]
    assert reads == sorted(reads, reverse=True) and reads[0] <= 0.5
    assert 3 <= len(pool.calls) == outcome.attempts


def test_no_attempt_after_the_deadline() -> None:
    next_hop, pool = hop()
    outcome = next_hop.deliver(stamped(), time.time() - 1)
    assert (outcome.ok, outcome.attempts, pool.calls) == (False, 0, [])


def test_describe_errors_in_one_line() -> None:
    assert client.describe(REFUSED).startswith("cannot connect:")
    assert client.describe(ReadTimeoutError(None, "/", "read timed out")) == (
        "no answer before the deadline"
    )
    assert client.describe(BROKEN).startswith("connection broken before the answer:")


# -- the WSGI app ------------------------------------------------------------------------------


DONE = Reply(200, {"status": "done"})
PASSED_ON = Outcome(True, 1)


class Recorder:
    """A handler that records what it was given and answers a fixed reply."""

    def __init__(self, reply: Reply | Exception = DONE) -> None:
        self.reply = reply
        self.calls: list[tuple[Message, float]] = []

    def __call__(self, message: Message, deadline: float) -> Reply:
        self.calls.append((message, deadline))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply

    def close(self) -> None:
        pass


def call(
    app: MessagesApp, method: str = "POST", path: str = "/messages", body: bytes = b"", **headers
) -> tuple[int, dict]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)) if method == "POST" else "",
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    answer: list[str] = []
    chunks = app(environ, lambda status, _headers: answer.append(status))
    return int(answer[0].split()[0]), json.loads(b"".join(chunks))


def post(app: MessagesApp, message: Message, **headers: str) -> tuple[int, dict]:
    key = {"idempotency_key": message.message_id}
    return call(app, body=wire.encode(message), **{**key, **headers})


def test_a_valid_call_reaches_the_handler_with_its_deadline() -> None:
    handler = Recorder()
    app = MessagesApp("service_b", handler, default_timeout=30)
    message = stamped()
    assert post(app, message, request_deadline="1795725244.5") == (200, {"status": "done"})
    assert handler.calls == [(message, 1795725244.5)]
    post(app, message)
    assert handler.calls[1][1] == pytest.approx(time.time() + 30, abs=1)


def test_bad_calls_get_one_line_reasons(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    app = MessagesApp("service_b", handler, default_timeout=30)
    message = stamped()
    assert call(app, body=b"[]", idempotency_key="k")[0] == 400
    assert post(app, message, idempotency_key="other") == (
        400,
        {"error": "header Idempotency-Key must be the message_id"},
    )
    assert post(app, message, request_deadline="later")[0] == 400
    assert call(app, "GET")[0] == 405
    assert call(app, path="/elsewhere")[0] == 404
    assert call(app, body=b"x" * (wire.MAX_REQUEST_BYTES + 1))[0] == 413
    assert handler.calls == []
    assert [r.message for r in caplog.records] == ["message refused"] * 3


def test_health_and_a_failing_handler() -> None:
    app = MessagesApp("service_b", Recorder(RuntimeError("boom")), default_timeout=30)
    assert call(app, "GET", "/health") == (200, {"status": "serving", "name": "service_b"})
    assert post(app, stamped()) == (500, {"error": "service_b failed: RuntimeError: boom"})


# -- a stage's handling of repeated calls ------------------------------------------------------


class FakeHop:
    url = URL

    def __init__(self, outcome: Outcome = PASSED_ON) -> None:
        self.outcome = outcome
        self.delivered: list[Message] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def deliver(self, message: Message, deadline: float) -> Outcome:
        self.entered.set()
        self.release.wait(5)
        self.delivered.append(message)
        return self.outcome

    def close(self) -> None:
        pass


@pytest.fixture
def work() -> Iterator[Stage]:
    yield Stage(WorkSettings("service_b", 0.0, 0.0))


def test_a_stage_works_and_passes_on_once_per_message(work: Stage) -> None:
    next_hop = FakeHop()
    handler = StageHandler(work, next_hop, IdempotencyKeys())
    message = stamped()
    assert handler(message, time.time() + 10) == Reply(200, {"status": "done"})
    assert handler(message, time.time() + 10) == Reply(200, {"status": "duplicate"})
    [passed] = next_hop.delivered
    assert passed.history == ("seq-7", "service_a", "service_b")


def test_a_repeat_while_the_first_call_is_in_progress_gets_409(work: Stage) -> None:
    next_hop = FakeHop()
    next_hop.release.clear()
    handler = StageHandler(work, next_hop, IdempotencyKeys())
    message = stamped()
    first = threading.Thread(target=handler, args=(message, time.time() + 10))
    first.start()
    assert next_hop.entered.wait(5)
    assert handler(message, time.time() + 10).status == 409
    next_hop.release.set()
    first.join()
    assert len(next_hop.delivered) == 1


def test_a_failed_pass_on_is_502_and_a_retry_works_again(work: Stage) -> None:
    keys = IdempotencyKeys()
    failing = FakeHop(Outcome(False, 3, "cannot connect: refused"))
    message = stamped()
    reply = StageHandler(work, failing, keys)(message, time.time() + 10)
    assert reply == Reply.error(502, f"could not pass it on to {URL}: cannot connect: refused")
    working = FakeHop()
    assert StageHandler(work, working, keys)(message, time.time() + 10).status == 200
    assert len(working.delivered) == 1


def test_no_work_after_the_deadline(work: Stage) -> None:
    next_hop = FakeHop()
    reply = StageHandler(work, next_hop, IdempotencyKeys())(stamped(), time.time() - 1)
    assert reply.status == 504 and next_hop.delivered == []


# -- settings --------------------------------------------------------------------------------


def test_next_url_is_required_and_checked() -> None:
    assert next_url(Env({"NEXT_URL": "http://b:8000/messages"}), "b") == "http://b:8000/messages"
    for bad in ("", "ftp://b/x", "http://", "not a url"):
        with pytest.raises(SettingsError, match=r"NEXT_URL=.*the URL of service_b"):
            next_url(Env({"NEXT_URL": bad}), "service_b")


def test_server_settings() -> None:
    settings = ServerSettings.from_env(Env({}))
    assert (settings.bind, settings.workers, settings.timeout) == ("127.0.0.1:8000", 10, 30.0)
    for bad in ("8000", "host:", "host:99999", ":8000"):
        with pytest.raises(SettingsError, match="HTTP_BIND"):
            ServerSettings.from_env(Env({"HTTP_BIND": bad}))


def test_the_http_last_records_like_the_broker_last(tmp_path: Path) -> None:
    """It runs the broker `last`'s own Sink: a message is recorded once, a repeat is a
    duplicate, both in RESULTS_FILE for the report."""
    results = tmp_path / "results.jsonl"
    app = http_last.load(Env({"RESULTS_FILE": str(results), "PROGRESS_INTERVAL": "0"}))
    message = stamped()
    assert post(app, message) == (200, {"status": "recorded"})
    assert post(app, message) == (200, {"status": "recorded"})
    app.close()
    kinds = [json.loads(line)["message"] for line in results.read_text().splitlines()]
    assert kinds == ["completed", "duplicate", "summary"]
