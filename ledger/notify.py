"""Outbound notifications: signed webhook deliveries with retries and a record of attempts.

A subscriber is a URL, the notification kinds it wants (``KINDS``), optionally one
project, and a secret. Raising a notification (:func:`enqueue` and the ``notify_*``
helpers) queues one delivery per matching active subscriber; the delivery id is derived
from (subscriber, project, kind, subject), so raising the same notification again
queues nothing new. :func:`deliver_pending` (called by a timer in the service or by
``ledger notify deliver``) sends what is due:

* ``POST`` of the JSON body, the same bytes on every attempt, with the headers
  ``Content-Type: application/json``,
  ``X-Ledger-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``,
  ``Idempotency-Key: <notification id>`` (the same for every attempt and every
  subscriber of one notification: a receiver keeps the keys it has processed and
  ignores repeats), ``X-Ledger-Event: <kind>``, ``X-Ledger-Delivery: <delivery id>``
  and ``X-Ledger-Attempt: <n>``;
* a 2xx answer marks the delivery delivered; anything else (another status, a refused
  connection, a timeout) schedules a retry after ``base_delay * 2 ** (attempt - 1)``
  seconds, at most ``max_delay``, until ``max_attempts`` attempts have failed;
* redirects are not followed and proxies are not used;
* every attempt is recorded (``delivery_attempts``, append-only) with its time,
  duration, HTTP status and error, for admins to list.

Senders in several processes do not send the same delivery at once: each claims a
delivery with a conditional UPDATE (a lease) before sending it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ledger import __version__
from ledger.entry import format_time
from ledger.errors import InvalidInput, LedgerError, NotFound
from ledger.service import check_project_name
from ledger.store.base import Store

__all__ = [
    "IDEMPOTENCY_HEADER",
    "KINDS",
    "SIGNATURE_HEADER",
    "Attempt",
    "Delivery",
    "DeliveryLoop",
    "DeliveryReport",
    "HttpResult",
    "RetryPolicy",
    "Subscriber",
    "deliver_pending",
    "enqueue",
    "http_post",
    "list_attempts",
    "list_deliveries",
    "list_subscribers",
    "notify_qa_flag",
    "notify_release_created",
    "notify_release_materialized",
    "notify_verification_failed",
    "safe_notify",
    "sign",
    "subscribe",
    "unsubscribe",
    "verify_signature",
]

KINDS = ("release.created", "release.materialized", "qa.flag_raised", "verification.failed")
SIGNATURE_HEADER = "X-Ledger-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = f"annotation-ledger/{__version__}"
#: namespace of the derived notification and delivery ids
_NAMESPACE = uuid.UUID("6f6c8a52-3d0e-5b8e-9a57-1e1f2d8c4b10")
_ID_LENGTH = 16
_MAX_SUBJECT = 500
_MAX_ERROR = 1000


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


# --- signatures ------------------------------------------------------------------------


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Ledger-Signature-256`` value: ``sha256=`` and the hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare the header with the HMAC of the body it received,
    in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


# --- subscribers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    id: str
    project: str | None
    url: str
    kinds: tuple[str, ...]
    active: bool
    created_at: str
    created_by: str
    description: str | None = None
    disabled_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kinds": list(self.kinds)}


def _check_url(url: str) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise InvalidInput.field("url", "must be a URL of at most 2000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput.field("url", f"must be an http or https URL, got {url!r}")
    if not parts.hostname:
        raise InvalidInput.field("url", f"has no host: {url!r}")
    if parts.username or parts.password:
        raise InvalidInput.field("url", "must not carry credentials; the body is signed instead")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise InvalidInput.field("url", f"bad port in {url!r}") from e
    return url


def _check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    chosen = tuple(dict.fromkeys(kinds))
    if not chosen:
        raise InvalidInput.field("kinds", f"name at least one of {', '.join(KINDS)}")
    for i, kind in enumerate(chosen):
        if kind not in KINDS:
            raise InvalidInput.field(
                f"kinds[{i}]", f"unknown notification kind {kind!r} (known: {', '.join(KINDS)})"
            )
    return chosen


def subscribe(
    store: Store,
    url: str,
    *,
    created_by: str,
    project: str | None = None,
    kinds: Iterable[str] | None = None,
    secret: str | None = None,
    description: str | None = None,
    now: datetime | None = None,
) -> tuple[Subscriber, str]:
    """Add a subscriber; return it and its secret (generated unless given). The secret
    is shown here only: listings never include it."""
    _check_url(url)
    if project is not None:
        check_project_name(project)
    chosen = _check_kinds(kinds)
    if secret is None:
        secret = secrets.token_urlsafe(32)
    elif len(secret) < 16 or len(secret) > 512:
        raise InvalidInput.field("secret", "must be 16 to 512 characters")
    if description is not None and len(description) > 500:
        raise InvalidInput.field("description", "must be at most 500 characters")
    sub = Subscriber(
        id=secrets.token_hex(_ID_LENGTH // 2),
        project=project,
        url=url,
        kinds=chosen,
        active=True,
        created_at=format_time(_now(now)),
        created_by=created_by,
        description=description,
    )
    store.execute(
        "INSERT INTO subscribers (id, project, url, secret, kinds, description, active,"
        " created_at, created_by, disabled_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, NULL)",
        (
            sub.id,
            sub.project,
            sub.url,
            secret,
            json.dumps(list(chosen)),
            description,
            sub.created_at,
            created_by,
        ),
    )
    return sub, secret


def _subscriber(row: Mapping[str, Any]) -> Subscriber:
    return Subscriber(
        id=row["id"],
        project=row["project"],
        url=row["url"],
        kinds=tuple(json.loads(row["kinds"])),
        active=bool(row["active"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        description=row["description"],
        disabled_at=row["disabled_at"],
    )


_SUB_COLUMNS = "id, project, url, kinds, active, created_at, created_by, description, disabled_at"


def list_subscribers(
    store: Store, *, project: str | None = None, include_inactive: bool = False
) -> list[Subscriber]:
    """Subscribers (without secrets); with ``project``, those that hear of it."""
    sql = f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE 1 = 1"
    params: list[Any] = []
    if project is not None:
        sql += " AND (project = ? OR project IS NULL)"
        params.append(project)
    if not include_inactive:
        sql += " AND active = 1"
    return [_subscriber(r) for r in store.query(sql + " ORDER BY created_at, id", params)]


def unsubscribe(store: Store, subscriber_id: str, *, now: datetime | None = None) -> None:
    """Deactivate a subscriber; its pending deliveries fail instead of being sent."""
    changed = store.execute(
        "UPDATE subscribers SET active = 0, disabled_at = ? WHERE id = ? AND active = 1",
        (format_time(_now(now)), subscriber_id),
    )
    exists = changed > 0 or store.query("SELECT id FROM subscribers WHERE id = ?", (subscriber_id,))
    if not exists:
        raise NotFound(f"subscriber {subscriber_id!r} does not exist")


# --- raising notifications ------------------------------------------------------------


def _body(notification_id: str, kind: str, project: str, subject: str, data: Any, at: str) -> str:
    document = {
        "id": notification_id,
        "kind": kind,
        "project": project,
        "subject": subject,
        "created_at": at,
        "data": data,
    }
    try:
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise InvalidInput.field("data", f"is not JSON-serializable: {e}") from e


def enqueue(
    store: Store,
    project: str,
    kind: str,
    subject: str,
    data: Any,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Queue one delivery of a notification per matching active subscriber.

    ``subject`` names what the notification is about (a release name, a flag id); the
    same (project, kind, subject) is queued once per subscriber, so raising it again is
    a no-op. Returns the ids of the deliveries, new or already queued."""
    check_project_name(project)
    if kind not in KINDS:
        raise InvalidInput.field("kind", f"unknown notification kind {kind!r}")
    if not subject or len(subject) > _MAX_SUBJECT:
        raise InvalidInput.field("subject", f"must be 1 to {_MAX_SUBJECT} characters")
    notification_id = str(uuid.uuid5(_NAMESPACE, f"{project}\n{kind}\n{subject}"))
    at = format_time(_now(now))
    body = _body(notification_id, kind, project, subject, data, at)
    ids: list[str] = []
    for sub in list_subscribers(store, project=project):
        if kind not in sub.kinds:
            continue
        delivery_id = str(uuid.uuid5(_NAMESPACE, f"{sub.id}\n{notification_id}"))
        store.execute(
            "INSERT INTO deliveries (project, id, subscriber_id, notification_id, kind, subject,"
            " body, status, attempts, next_attempt_at, lease_until, created_at, delivered_at,"
            " last_error) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, NULL, ?, NULL, NULL)"
            " ON CONFLICT DO NOTHING",
            (project, delivery_id, sub.id, notification_id, kind, subject, body, at, at),
        )
        ids.append(delivery_id)
    return ids


def notify_release_created(
    store: Store, project: str, name: str, *, now: datetime | None = None
) -> list[str]:
    """Queue ``release.created`` for a recorded release (its name, entry, tree size,
    selection policy and export hash)."""
    rows = store.query(
        "SELECT name, seq, tree_size, policy, sha256 FROM releases WHERE project = ? AND name = ?",
        (project, name),
    )
    if not rows:
        raise NotFound(f"release {name!r} does not exist in {project}")
    r = rows[0]
    data = {
        "name": r["name"],
        "seq": int(r["seq"]),
        "tree_size": int(r["tree_size"]),
        "policy": json.loads(r["policy"]),
        "sha256": r["sha256"],
    }
    return enqueue(store, project, "release.created", name, data, now=now)


def notify_release_materialized(
    store: Store,
    project: str,
    name: str,
    manifest_sha256: str,
    files: int,
    *,
    seq: int | None = None,
    target: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Queue ``release.materialized``: the exports of a release were written."""
    data = {
        "name": name,
        "manifest_sha256": manifest_sha256,
        "files": files,
        "seq": seq,
        "target": target,
    }
    return enqueue(
        store, project, "release.materialized", f"{name}@{manifest_sha256}", data, now=now
    )


def notify_qa_flag(
    store: Store, project: str, flag: Mapping[str, Any], *, now: datetime | None = None
) -> list[str]:
    """Queue ``qa.flag_raised`` for one QA flag (a JSON object). Its subject is the
    flag's ``id`` (or ``flag_id``) when it has one, otherwise the SHA-256 of its JSON."""
    if not isinstance(flag, Mapping):
        raise InvalidInput.field("flag", "must be a JSON object")
    key = flag.get("id", flag.get("flag_id"))
    if key is None:
        text = json.dumps(flag, sort_keys=True, separators=(",", ":"), default=str)
        key = hashlib.sha256(text.encode()).hexdigest()
    return enqueue(store, project, "qa.flag_raised", str(key), dict(flag), now=now)


def notify_verification_failed(
    store: Store,
    project: str,
    what: str,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Queue ``verification.failed``: ``what`` failed (``log``, ``release v7``,
    ``materialized v7``) with ``message``. The same failure is queued once."""
    digest = hashlib.sha256(f"{what}\n{message}".encode()).hexdigest()[:32]
    data = {"what": what, "message": message, **dict(details or {})}
    return enqueue(store, project, "verification.failed", f"{what}:{digest}", data, now=now)


# --- sending ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: wait ``base_delay * 2 ** (n - 1)`` seconds after failed
    attempt n, at most ``max_delay``; give up after ``max_attempts`` attempts."""

    base_delay: float = 30.0
    max_delay: float = 6 * 3600.0
    max_attempts: int = 10
    #: seconds one attempt may take (connect and answer)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < 0 or self.timeout <= 0:
            raise InvalidInput.field("retry", "delays must be >= 0 and the timeout > 0")
        if self.max_attempts < 1:
            raise InvalidInput.field("retry.max_attempts", "must be at least 1")

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class HttpResult:
    status: int | None
    error: str | None = None


Sender = Callable[[str, bytes, Mapping[str, str], float], HttpResult]


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpResult:
    """POST with http.client: no redirects followed, no proxies, ``timeout`` seconds."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        response.read(64 * 1024)
        status = response.status
    except (OSError, http.client.HTTPException) as e:
        return HttpResult(None, f"{type(e).__name__}: {e}"[:_MAX_ERROR])
    finally:
        conn.close()
    if 200 <= status < 300:
        return HttpResult(status)
    return HttpResult(status, f"HTTP {status} {response.reason}"[:_MAX_ERROR])


@dataclass
class DeliveryReport:
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    #: delivery ids by outcome of this run
    outcomes: dict[str, str] = field(default_factory=dict)


def _due(store: Store, at: str, limit: int, only: Sequence[str] | None) -> list[dict[str, Any]]:
    sql = (
        "SELECT d.project, d.id, d.notification_id, d.kind, d.body, s.url, s.secret, s.active"
        " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
        " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
        " AND (d.lease_until IS NULL OR d.lease_until < ?)"
    )
    params: list[Any] = [at, at]
    if only is not None:
        if not only:
            return []
        sql += f" AND d.id IN ({','.join('?' * len(only))})"
        params.extend(only)
    return store.query(sql + " ORDER BY d.next_attempt_at, d.id LIMIT ?", [*params, limit])


def _claim(store: Store, row: Mapping[str, Any], at: str, lease: str) -> int | None:
    """Take the lease and count the attempt; None if another sender was faster."""
    taken = store.execute(
        "UPDATE deliveries SET lease_until = ?, attempts = attempts + 1"
        " WHERE project = ? AND id = ? AND status = 'pending' AND next_attempt_at <= ?"
        " AND (lease_until IS NULL OR lease_until < ?)",
        (lease, row["project"], row["id"], at, at),
    )
    if taken != 1:
        return None
    rows = store.query(
        "SELECT attempts FROM deliveries WHERE project = ? AND id = ?", (row["project"], row["id"])
    )
    return int(rows[0]["attempts"])


def deliver_pending(
    store: Store,
    *,
    policy: RetryPolicy | None = None,
    limit: int = 100,
    now: Callable[[], datetime] | None = None,
    sender: Sender | None = None,
    only: Sequence[str] | None = None,
) -> DeliveryReport:
    """Send every due delivery (at most ``limit``), one attempt each; record each
    attempt and schedule retries. ``only`` restricts the run to those delivery ids."""
    policy = policy or RetryPolicy()
    clock = now or (lambda: datetime.now(UTC))
    send = sender or http_post
    report = DeliveryReport()
    started = clock()
    for row in _due(store, format_time(started), limit, only):
        at_time = clock()
        at = format_time(at_time)
        lease = format_time(at_time + timedelta(seconds=policy.timeout + 60))
        attempt = _claim(store, row, at, lease)
        if attempt is None:
            continue
        report.attempted += 1
        body = str(row["body"]).encode()
        t0 = time.monotonic()
        if not row["active"]:
            result = HttpResult(None, "subscriber was removed")
        else:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(row["secret"], body),
                IDEMPOTENCY_HEADER: row["notification_id"],
                "X-Ledger-Event": row["kind"],
                "X-Ledger-Delivery": row["id"],
                "X-Ledger-Attempt": str(attempt),
            }
            try:
                result = send(row["url"], body, headers, policy.timeout)
            except Exception as e:  # a sender must never stop the others
                result = HttpResult(None, f"{type(e).__name__}: {e}"[:_MAX_ERROR])
        duration_ms = int((time.monotonic() - t0) * 1000)
        done_at = clock()
        ok = result.status is not None and 200 <= result.status < 300
        if ok:
            outcome = "delivered"
        elif not row["active"] or attempt >= policy.max_attempts:
            outcome = "failed"
        else:
            outcome = "retry"
        store.execute(
            "INSERT INTO delivery_attempts (project, delivery_id, attempt, started_at,"
            " duration_ms, status_code, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["project"],
                row["id"],
                attempt,
                at,
                duration_ms,
                result.status,
                result.error,
                outcome,
            ),
        )
        if outcome == "delivered":
            store.execute(
                "UPDATE deliveries SET status = 'delivered', delivered_at = ?, lease_until = NULL,"
                " last_error = NULL WHERE project = ? AND id = ?",
                (format_time(done_at), row["project"], row["id"]),
            )
            report.delivered += 1
        elif outcome == "failed":
            store.execute(
                "UPDATE deliveries SET status = 'failed', lease_until = NULL, last_error = ?"
                " WHERE project = ? AND id = ?",
                (result.error, row["project"], row["id"]),
            )
            report.failed += 1
        else:
            retry_at = format_time(done_at + timedelta(seconds=policy.delay(attempt)))
            store.execute(
                "UPDATE deliveries SET next_attempt_at = ?, lease_until = NULL, last_error = ?"
                " WHERE project = ? AND id = ?",
                (retry_at, result.error, row["project"], row["id"]),
            )
            report.retrying += 1
        report.outcomes[row["id"]] = outcome
    return report


class DeliveryLoop:
    """Call :func:`deliver_pending` every ``interval`` seconds in a daemon thread (for
    the service); ``stop()`` ends it. Errors are passed to ``on_error`` and the loop
    goes on."""

    def __init__(
        self,
        store: Store,
        interval: float = 10.0,
        *,
        policy: RetryPolicy | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise InvalidInput.field("interval", "must be > 0 seconds")
        self.store = store
        self.interval = interval
        self.policy = policy
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-notify", daemon=True)

    def start(self) -> DeliveryLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deliver_pending(self.store, policy=self.policy)
            except Exception as e:
                if self.on_error is not None:
                    self.on_error(e)
            self._stop.wait(self.interval)


# --- listing (admins) -------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    attempt: int
    started_at: str
    duration_ms: int
    status_code: int | None
    error: str | None
    outcome: str


@dataclass(frozen=True)
class Delivery:
    id: str
    project: str
    subscriber_id: str
    url: str
    notification_id: str
    kind: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: str
    created_at: str
    delivered_at: str | None
    last_error: str | None
    history: tuple[Attempt, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_STATUSES = ("pending", "delivered", "failed")


def list_deliveries(
    store: Store,
    *,
    project: str | None = None,
    subscriber_id: str | None = None,
    status: str | None = None,
    with_attempts: bool = False,
    limit: int = 100,
) -> list[Delivery]:
    """Deliveries, newest first, optionally with every attempt. For admins: the API
    layer restricts it to the admin role."""
    if status is not None and status not in _STATUSES:
        raise InvalidInput.field("status", f"must be one of {', '.join(_STATUSES)}")
    if limit < 1:
        raise InvalidInput.field("limit", "must be at least 1")
    sql = (
        "SELECT d.id, d.project, d.subscriber_id, s.url, d.notification_id, d.kind, d.subject,"
        " d.status, d.attempts, d.next_attempt_at, d.created_at, d.delivered_at, d.last_error"
        " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE 1 = 1"
    )
    params: list[Any] = []
    for column, value in (
        ("d.project", project),
        ("d.subscriber_id", subscriber_id),
        ("d.status", status),
    ):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    rows = store.query(sql + " ORDER BY d.created_at DESC, d.id LIMIT ?", [*params, limit])
    out = []
    for r in rows:
        history = tuple(list_attempts(store, r["project"], r["id"])) if with_attempts else ()
        out.append(
            Delivery(
                **{k: r[k] for k in r if k != "attempts"},
                attempts=int(r["attempts"]),
                history=history,
            )
        )
    return out


def list_attempts(store: Store, project: str, delivery_id: str) -> list[Attempt]:
    """Every attempt of one delivery, in order."""
    rows = store.query(
        "SELECT attempt, started_at, duration_ms, status_code, error, outcome"
        " FROM delivery_attempts WHERE project = ? AND delivery_id = ? ORDER BY attempt",
        (project, delivery_id),
    )
    return [
        Attempt(
            int(r["attempt"]),
            r["started_at"],
            int(r["duration_ms"]),
            None if r["status_code"] is None else int(r["status_code"]),
            r["error"],
            r["outcome"],
        )
        for r in rows
    ]


def safe_notify(action: Callable[[], list[str]]) -> tuple[list[str], str | None]:
    """Run a ``notify_*`` call where a notification must never make the caller fail
    (for example inside ``release verify``): returns the ids, or the error text."""
    try:
        return action(), None
    except LedgerError as e:
        return [], str(e)
