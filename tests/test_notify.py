"""Outbound notifications, checked by a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import InvalidInput, NotFound, StorageError, VerificationFailed
from ledger.events import ReleasePolicy
from ledger.materialize import (
    WorkflowSettings,
    check_materialized,
    materialize_release,
    on_release_created,
)
from ledger.notify import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    DeliveryLoop,
    RetryPolicy,
    deliver_pending,
    enqueue,
    list_attempts,
    list_deliveries,
    list_subscribers,
    notify_qa_flag,
    notify_release_created,
    sign,
    subscribe,
    unsubscribe,
    verify_signature,
)
from ledger.releases import create_release
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f

P = "proj"
SECRET = "s3cret-s3cret-s3cret"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class Receiver:
    """A webhook receiver: checks the HMAC, keeps the idempotency keys it processed, and
    answers with the statuses queued in ``plan`` (then 200)."""

    url: str
    secret: str = SECRET
    plan: list[int | str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kinds_processed(self) -> list[tuple[str, str]]:
        return sorted((d["kind"], d["subject"]) for d in self.processed.values())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            r = state[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify_signature(r.secret, body, self.headers.get(SIGNATURE_HEADER))
            with r.lock:
                r.requests.append(Request(self.path, dict(self.headers), body, ok))
                action = r.plan.pop(0) if r.plan else 200
            if action == "sleep":
                time.sleep(0.6)
                action = 200
            if action == "drop":  # processed, but the answer is lost
                with r.lock:
                    r.processed.setdefault(self.headers[IDEMPOTENCY_HEADER], json.loads(body))
                self.close_connection = True
                self.connection.close()
                return
            status = 401 if not ok else int(action)
            if status == 200:
                with r.lock:
                    key = self.headers[IDEMPOTENCY_HEADER]
                    r.processed.setdefault(key, json.loads(body))  # a repeat is ignored
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/ledger?x=1"))
    yield state[0]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def project(ledger: Ledger) -> Ledger:
    ledger.append(P, [*f.setup_events(), f.mask_created("a"), f.review("a", 1, "accept")], "t")
    return ledger


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


FAST = RetryPolicy(base_delay=10, max_delay=60, max_attempts=3, timeout=0.3)


def test_hmac_signature() -> None:
    # RFC 4231 test case 2
    expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign("Jefe", b"what do ya want for nothing?") == expected
    assert verify_signature("Jefe", b"what do ya want for nothing?", expected)
    assert not verify_signature("Jefe", b"what do ya want for nothing!", expected)
    assert not verify_signature("other", b"what do ya want for nothing?", expected)
    assert not verify_signature("Jefe", b"", None)


def test_each_release_arrives_once_even_when_the_first_delivery_failed(
    project: Ledger, store: Store, receiver: Receiver
) -> None:
    subscribe(store, receiver.url, created_by="admin", secret=SECRET, kinds=["release.created"])
    receiver.plan = [500, "drop"]  # first attempt refused, second processed but unanswered
    create_release(project, P, "v1", actor="admin", principal="t")
    hook = on_release_created(project, P, "v1", WorkflowSettings())
    assert hook.errors == [] and len(hook.deliveries) == 1
    assert receiver.processed == {}  # the first attempt was answered with 500
    # raising it again queues nothing new
    assert notify_release_created(store, P, "v1") == hook.deliveries
    assert deliver_pending(store, policy=FAST).attempted == 0  # not due yet
    second = deliver_pending(store, policy=FAST, now=lambda: later(31))  # default: 30 s
    assert (second.attempted, second.retrying) == (1, 1)  # the answer was lost
    third = deliver_pending(store, policy=FAST, now=lambda: later(120))
    assert (third.attempted, third.delivered) == (1, 1)
    assert deliver_pending(store, policy=FAST, now=lambda: later(3600)).attempted == 0

    create_release(
        project, P, "v2", actor="admin", principal="t", policy=ReleasePolicy(selection="all")
    )
    assert on_release_created(project, P, "v2").errors == []

    assert len(receiver.requests) == 4 and all(r.signature_ok for r in receiver.requests)
    assert receiver.kinds_processed() == [("release.created", "v1"), ("release.created", "v2")]
    v1 = [r for r in receiver.requests if json.loads(r.body)["subject"] == "v1"]
    assert len({r.body for r in v1}) == 1 and len({r.headers[IDEMPOTENCY_HEADER] for r in v1}) == 1
    assert [r.headers["X-Ledger-Attempt"] for r in v1] == ["1", "2", "3"]
    assert v1[0].path == "/hooks/ledger?x=1"
    assert v1[0].headers["Content-Type"] == "application/json"
    body = json.loads(v1[0].body)
    assert body["kind"] == "release.created" and body["project"] == P
    assert (
        body["data"]["sha256"]
        == store.query("SELECT sha256 FROM releases WHERE name = 'v1'")[0]["sha256"]
    )

    (delivery,) = list_deliveries(store, project=P, status="delivered", with_attempts=True, limit=1)
    assert delivery.subject == "v2" and [a.outcome for a in delivery.history] == ["delivered"]
    first = next(d for d in list_deliveries(store, project=P) if d.subject == "v1")
    attempts = list_attempts(store, P, first.id)
    assert [(a.attempt, a.status_code, a.outcome) for a in attempts] == [
        (1, 500, "retry"),
        (2, None, "retry"),
        (3, 200, "delivered"),
    ]
    assert attempts[0].error == "HTTP 500 Internal Server Error"
    assert attempts[1].error is not None and "RemoteDisconnected" in attempts[1].error
    assert first.status == "delivered" and first.attempts == 3 and first.last_error is None


def test_backoff_then_giving_up(project: Ledger, store: Store, receiver: Receiver) -> None:
    subscribe(store, receiver.url, created_by="admin", secret=SECRET)
    receiver.plan = [503, 503, 503]
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    (delivery_id,) = enqueue(store, P, "verification.failed", "log", {"message": "x"}, now=t0)
    at = [t0]
    report = deliver_pending(store, policy=FAST, now=lambda: at[0])
    assert report.outcomes == {delivery_id: "retry"}
    (d,) = list_deliveries(store)
    assert d.next_attempt_at == "2026-11-01T00:00:10.000000Z"
    at[0] = t0 + timedelta(seconds=9)
    assert deliver_pending(store, policy=FAST, now=lambda: at[0]).attempted == 0
    at[0] = t0 + timedelta(seconds=10)
    assert deliver_pending(store, policy=FAST, now=lambda: at[0]).retrying == 1
    assert list_deliveries(store)[0].next_attempt_at == "2026-11-01T00:00:30.000000Z"  # 10 + 20
    at[0] = t0 + timedelta(seconds=30)
    assert deliver_pending(store, policy=FAST, now=lambda: at[0]).failed == 1
    (d,) = list_deliveries(store, status="failed", with_attempts=True)
    assert [a.outcome for a in d.history] == ["retry", "retry", "failed"]
    assert d.last_error == "HTTP 503 Service Unavailable"
    assert deliver_pending(store, policy=FAST, now=lambda: at[0] + timedelta(days=1)).attempted == 0
    assert len(receiver.requests) == 3
    assert RetryPolicy(base_delay=30, max_delay=100).delay(5) == 100


def test_unreachable_and_slow_receivers(project: Ledger, store: Store, receiver: Receiver) -> None:
    sub, _ = subscribe(store, "http://127.0.0.1:9/nothing-listens", created_by="admin")
    enqueue(store, P, "qa.flag_raised", "f1", {"x": 1})
    report = deliver_pending(store, policy=FAST)
    assert report.retrying == 1
    (d,) = list_deliveries(store, subscriber_id=sub.id)
    assert d.last_error is not None and "ConnectionRefusedError" in d.last_error
    unsubscribe(store, sub.id)
    subscribe(store, receiver.url, created_by="admin", secret=SECRET)
    receiver.plan = ["sleep"]
    enqueue(store, P, "qa.flag_raised", "f2", {"x": 2})
    report = deliver_pending(store, policy=FAST, now=lambda: later(20))
    # the removed subscriber's delivery fails without a request; the slow one times out
    assert sorted(report.outcomes.values()) == ["failed", "retry"]
    removed = list_deliveries(store, subscriber_id=sub.id, with_attempts=True)[0]
    assert removed.status == "failed" and removed.history[-1].error == "subscriber was removed"
    slow = next(d for d in list_deliveries(store) if d.subject == "f2")
    assert slow.last_error is not None and "timed out" in slow.last_error


def test_filters_by_kind_and_project(
    project: Ledger, store: Store, receiver: Receiver, tmp_path: Path
) -> None:
    qa_only, _ = subscribe(
        store, receiver.url, created_by="a", secret=SECRET, kinds=["qa.flag_raised"]
    )
    subscribe(store, receiver.url, created_by="a", secret=SECRET, project="elsewhere")
    failures, _ = subscribe(
        store, receiver.url, created_by="a", secret=SECRET, project=P, kinds=["verification.failed"]
    )
    assert [s.id for s in list_subscribers(store, project=P)] == [qa_only.id, failures.id]
    flag = {"check": "overlap", "code": "overlap.high", "image_id": "img-1", "instance_ids": ["a"]}
    assert len(notify_qa_flag(store, P, flag)) == 1
    assert notify_qa_flag(store, P, flag) == notify_qa_flag(
        store, P, dict(flag)
    )  # same flag, same delivery
    create_release(project, P, "v1", actor="admin", principal="t")
    assert notify_release_created(store, P, "v1") == []  # nobody wants release.created here
    out = tmp_path / "v1"
    materialize_release(project, P, "v1", out, principal="t")
    (out / "coco.json").write_bytes(b"{}")
    with pytest.raises(VerificationFailed, match=r"changed file coco\.json"):
        check_materialized(store, P, out, notify=True)
    deliver_pending(store)
    assert [k for k, _ in receiver.kinds_processed()] == ["qa.flag_raised", "verification.failed"]
    failure = next(d for d in receiver.processed.values() if d["kind"] == "verification.failed")
    assert failure["data"]["what"] == "materialized release v1"
    assert failure["data"]["problems"][0].startswith("changed file coco.json")
    assert all(r.signature_ok for r in receiver.requests)


def test_concurrent_senders_send_each_delivery_once(
    project: Ledger, store: Store, receiver: Receiver
) -> None:
    subscribe(store, receiver.url, created_by="admin", secret=SECRET)
    for k in range(6):
        enqueue(store, P, "qa.flag_raised", f"flag-{k}", {"k": k})
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(deliver_pending(store))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.delivered for r in results) == 6
    assert len(receiver.requests) == 6 and len(receiver.processed) == 6


def test_delivery_loop(project: Ledger, store: Store, receiver: Receiver) -> None:
    subscribe(store, receiver.url, created_by="admin", secret=SECRET)
    enqueue(store, P, "release.created", "v0", {"name": "v0"})
    errors: list[Exception] = []
    loop = DeliveryLoop(store, interval=0.05, on_error=errors.append).start()
    try:
        deadline = time.monotonic() + 10
        while not receiver.processed and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loop.stop(5)
    assert receiver.kinds_processed() == [("release.created", "v0")] and errors == []
    with pytest.raises(InvalidInput, match="interval: must be > 0 seconds"):
        DeliveryLoop(store, interval=0)


BAD_SUBSCRIPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://example.org/x"}, "url: must be an http or https URL"),
    ({"url": "http:///path"}, "url: has no host"),
    ({"url": "https://user:pw@example.org/"}, "url: must not carry credentials"),
    ({"url": "http://example.org:99999/"}, "url: bad port"),
    (
        {"kinds": ["release.deleted"]},
        r"kinds\[0\]: unknown notification kind 'release.deleted'",
    ),
    ({"kinds": []}, "kinds: name at least one of"),
    ({"secret": "short"}, "secret: must be 16 to 512 characters"),
    ({"project": "Not A Project"}, "project names are 1-64 characters"),
]


def test_malformed_input_is_refused(store: Store) -> None:
    for kwargs, match in BAD_SUBSCRIPTIONS:
        args: dict[str, Any] = {"url": "http://127.0.0.1:1/x", **kwargs}
        url = args.pop("url")
        with pytest.raises(InvalidInput, match=match):
            subscribe(store, url, created_by="admin", **args)
    assert list_subscribers(store, include_inactive=True) == []
    # refusals once a project and a subscriber exist
    project = Ledger(store)
    project.append(P, f.setup_events(), "t")
    with pytest.raises(InvalidInput, match=r"kind: unknown notification kind 'mask\.created'"):
        enqueue(store, P, "mask.created", "x", {})
    with pytest.raises(InvalidInput, match="subject: must be 1 to 500 characters"):
        enqueue(store, P, "qa.flag_raised", "", {})
    subscribe(store, "http://127.0.0.1:1/x", created_by="admin")
    with pytest.raises(InvalidInput, match="data: is not JSON-serializable"):
        enqueue(store, P, "qa.flag_raised", "x", {"bad": float("nan")})
    with pytest.raises(InvalidInput, match="status: must be one of pending, delivered, failed"):
        list_deliveries(store, status="lost")
    with pytest.raises(NotFound, match="subscriber 'nope' does not exist"):
        unsubscribe(store, "nope")
    with pytest.raises(NotFound, match="release 'v9' does not exist in proj"):
        notify_release_created(store, P, "v9")
    with pytest.raises(InvalidInput, match=r"retry\.max_attempts: must be at least 1"):
        RetryPolicy(max_attempts=0)


def test_attempts_are_append_only(project: Ledger, store: Store, receiver: Receiver) -> None:
    subscribe(store, receiver.url, created_by="admin", secret=SECRET)
    enqueue(store, P, "qa.flag_raised", "f", {})
    deliver_pending(store)
    with pytest.raises(StorageError, match="delivery_attempts is append-only"):
        store.execute("UPDATE delivery_attempts SET outcome = 'failed'")
    with pytest.raises(StorageError, match="delivery_attempts is append-only"):
        store.execute("DELETE FROM delivery_attempts")
    assert list_deliveries(store, with_attempts=True)[0].history[0].outcome == "delivered"


def test_notify_commands(project: Ledger, db_url: str, tmp_path: Path, receiver: Receiver) -> None:
    from tests.test_routing import invoke_cli

    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    code, out, err = invoke_cli(
        db_url,
        tmp_path,
        [
            "notify",
            "subscribe",
            "--url",
            receiver.url,
            "-p",
            P,
            "--kind",
            "release.created",
            "--secret-file",
            str(secret_file),
        ],
    )
    assert code == 0 and out.strip() == SECRET and "release.created" in err
    code, out, _ = invoke_cli(db_url, tmp_path, ["notify", "list", "--format", "json"])
    (sub,) = json.loads(out)
    assert code == 0 and sub["url"] == receiver.url and "secret" not in sub
    create_release(project, P, "v1", actor="admin", principal="t")
    notify_release_created(project.store, P, "v1")
    receiver.plan = [500]
    code, out, _ = invoke_cli(db_url, tmp_path, ["notify", "deliver"])
    assert code == 0 and out.strip() == "1 attempted: 0 delivered, 1 to retry, 0 failed"
    code, out, _ = invoke_cli(db_url, tmp_path, ["notify", "deliveries", "--attempts"])
    assert code == 0 and "pending" in out and "attempt 1 at" in out and "HTTP 500" in out
    code, out, _ = invoke_cli(db_url, tmp_path, ["notify", "unsubscribe", sub["id"]])
    assert code == 0 and out.strip() == f"subscriber {sub['id']} removed"
    code, out, _ = invoke_cli(db_url, tmp_path, ["notify", "list", "--all"])
    assert code == 0 and "removed 20" in out
    code, _, err = invoke_cli(db_url, tmp_path, ["notify", "subscribe", "--url", "gopher://x"])
    assert code == 2 and "url: must be an http or https URL" in err
    assert all(r.signature_ok for r in receiver.requests) and len(receiver.requests) == 1
