"""ledger.client against a real gunicorn, and its proof checks against a stand-in
server built from a real log (the checkpoint and proof endpoints are served by another
blueprint; the live test of those runs once it is registered)."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.testing import LiveServer, free_port
from ledger import merkle
from ledger.auth import Forbidden, TokenStore, Unauthorized
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.client import LedgerClient
from ledger.errors import (
    Conflict,
    InvalidInput,
    NoteError,
    NotFound,
    ProofError,
    StorageUnavailable,
)
from ledger.note import generate_signer
from ledger.service import Ledger
from ledger.store import Store, open_store
from tests import factory as f


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, dict[str, str], Path]]:
    data = tmp_path_factory.mktemp("client")
    db = data / "ledger.db"
    url = f"sqlite:///{db}"
    store = open_store(url, upgrade=True)
    tokens = TokenStore(store)
    secrets = {role: tokens.create(role, name=f"{role}-tool", created_by="test")[1]
               for role in ("admin", "writer", "auditor")}  # fmt: skip
    store.close()
    with LiveServer(url, data_dir=data, env={"LEDGER_SQLITE_BUSY_TIMEOUT": "0.2"}) as server:
        with LedgerClient(server.url, secrets["admin"]) as admin:
            admin.create_project("alpha", "Alpha")
            admin.append("alpha", f.setup_events()[1:])
        yield server, secrets, db


def _client(live: tuple[LiveServer, dict[str, str], Path], role: str, **kw: Any) -> LedgerClient:
    server, secrets, _ = live
    return LedgerClient(server.url, secrets[role], **kw)


def test_append_and_read_back(live: tuple[LiveServer, dict[str, str], Path]) -> None:
    with _client(live, "writer") as writer, _client(live, "auditor") as auditor:
        batch = [f.mask_created(f"c-{uuid.uuid4().hex[:8]}") for _ in range(5)]
        del batch[0]["id"]  # the client gives it one, kept across retries
        reply = writer.append("alpha", batch)
        assert reply.appended == 5 and reply.project == "alpha"
        seqs = [r.seq for r in reply.results]
        assert seqs == list(range(reply.size - 5, reply.size))
        uuid.UUID(reply.results[0].id)
        one = writer.append_one("alpha", f.mask_created(f"c-{uuid.uuid4().hex[:8]}"))
        assert one.seq == reply.size and not one.duplicate
        entries = list(auditor.entries("alpha", page_size=3))
        assert [e.seq for e in entries] == list(range(reply.size + 1))
        assert merkle.root_from_leaves(e.leaf_hash for e in entries[: reply.size]) == reply.root
        mine = list(auditor.entries("alpha", type="mask.created", actor="alice", start=seqs[0]))
        assert [e.seq for e in mine] == [*seqs, one.seq]
        assert json.loads(auditor.entry("alpha", seqs[2]).raw)["principal"] == "token:writer-tool"
        assert auditor.instance("alpha", batch[1]["payload"]["instance_id"])["revision"] == 1
        assert auditor.verify("alpha")["ok"] is True
        assert auditor.whoami()["role"] == "auditor"
        assert [p["project"] for p in auditor.projects()] == ["alpha"]
        assert (
            auditor.project("alpha")["root"]
            == merkle.root_from_leaves(e.leaf_hash for e in entries).hex()
        )
        replies = writer.append_all(
            "alpha", (f.mask_created(f"a-{uuid.uuid4().hex[:8]}") for _ in range(5)), batch_size=2
        )
        assert [len(r.results) for r in replies] == [2, 2, 1]


class LoseFirstAnswer(httpx.HTTPTransport):
    """Delivers the first POST, then drops its answer, as a broken connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and not self.lost:
            response.read()
            self.lost += 1
            raise httpx.ReadError("connection reset after the request was sent")
        return response


def test_retry_after_a_lost_answer_is_idempotent(
    live: tuple[LiveServer, dict[str, str], Path],
) -> None:
    transport = LoseFirstAnswer()
    sleeps: list[float] = []
    with _client(live, "writer", transport=transport, sleep=sleeps.append) as writer:
        before = writer.project("alpha")["size"]
        event = f.mask_created(f"lost-{uuid.uuid4().hex[:8]}")
        reply = writer.append("alpha", [event])
    assert transport.lost == 1 and len(sleeps) == 1
    assert reply.results[0].duplicate and reply.results[0].seq == before
    assert reply.size == before + 1


def test_retry_waits_out_a_503(live: tuple[LiveServer, dict[str, str], Path]) -> None:
    _, _, db = live
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")  # the database comes back while the client waits

    try:
        with _client(live, "writer", sleep=sleep) as writer:
            reply = writer.append("alpha", [f.mask_created(f"busy-{uuid.uuid4().hex[:8]}")])
    finally:
        blocker.close()
    assert reply.appended == 1
    assert sleeps == [1.0]  # the server's Retry-After


def test_gives_up_after_the_retries(live: tuple[LiveServer, dict[str, str], Path]) -> None:
    sleeps: list[float] = []
    nowhere = LedgerClient(
        f"http://127.0.0.1:{free_port()}", "t", retries=3, backoff=0.1, sleep=sleeps.append
    )
    with nowhere, pytest.raises(StorageUnavailable, match="cannot reach the ledger"):
        nowhere.append("alpha", [f.mask_created()])
    assert len(sleeps) == 2 and all(0.05 <= s <= 0.6 for s in sleeps)


def test_errors_arrive_as_ledger_errors(live: tuple[LiveServer, dict[str, str], Path]) -> None:
    server, _, _ = live
    with _client(live, "writer") as writer:
        bad = f.mask_created("bad-mask", segmentation={"size": [48, 64], "counts": "??"})
        with pytest.raises(InvalidInput) as invalid:
            writer.append("alpha", [f.mask_created(f"ok-{uuid.uuid4().hex[:6]}"), bad])
        assert invalid.value.errors and invalid.value.errors[0].loc.startswith(
            "events[1].payload.segmentation"
        )
        with pytest.raises(Forbidden, match=r"may not post review\.decided"):
            writer.append("alpha", [f.review("inst-1", 1)])
        with pytest.raises(NotFound):
            writer.instance("alpha", "no-such-instance")
        event = f.mask_created(f"dup-{uuid.uuid4().hex[:6]}")
        writer.append("alpha", [event])
        with pytest.raises(Conflict, match="already used"):
            writer.append("alpha", [{**event, "client_time": "2030-01-01T00:00:00Z"}])
    with (
        LedgerClient(server.url, "ldg_0000000000000000_" + "x" * 43) as stranger,
        pytest.raises(Unauthorized),
    ):
        stranger.projects()


# --- checkpoints and proofs, checked by the client -----------------------------------------


class StandIn:
    """Serves checkpoints and proofs of a real log the way the API documents them."""

    def __init__(self, store: Store, project: str, origin: str) -> None:
        self.store, self.project, self.origin = store, project, origin
        self.signer = generate_signer("test-ledger")
        self.notes: dict[int, bytes] = {}
        self.tamper: Callable[[str, dict[str, Any]], dict[str, Any]] = lambda path, body: body

    def checkpoint(self, size: int) -> Checkpoint:
        root = merkle.tree_hash(size, lambda ix: self.store.read_hashes(self.project, ix))
        cp = Checkpoint(self.origin, size, root)
        self.notes[size] = sign_checkpoint(cp, self.signer)
        return cp

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, request.url.params
        base = f"/v1/projects/{self.project}"
        reader = lambda ix: self.store.read_hashes(self.project, ix)  # noqa: E731
        if path == f"{base}/checkpoints/latest":
            return httpx.Response(
                200, content=self.notes[max(self.notes)], headers={"Content-Type": "text/plain"}
            )
        if path.startswith(f"{base}/checkpoints/"):
            size = int(path.rsplit("/", 1)[1])
            return httpx.Response(200, json={"tree_size": size, "note": self.notes[size].decode()})
        if path == f"{base}/proofs/inclusion":
            hashes = merkle.inclusion_proof(int(q["index"]), int(q["size"]), reader)
            body = {
                "leaf_index": int(q["index"]),
                "tree_size": int(q["size"]),
                "inclusion_path": [h.hex() for h in hashes],
            }
            return httpx.Response(200, json=self.tamper(path, body))
        if path == f"{base}/proofs/consistency":
            hashes = merkle.consistency_proof(int(q["from"]), int(q["to"]), reader)
            return httpx.Response(
                200, json=self.tamper(path, {"consistency_path": [h.hex() for h in hashes]})
            )
        if path.startswith(f"{base}/entries/"):
            seq = int(path.rsplit("/", 1)[1])
            raw = dict(self.store.iter_entries(self.project, seq, seq + 1))[seq]
            return httpx.Response(200, json=self.tamper(path, {"seq": seq, "entry": raw.decode()}))
        if path == "/v1/keys":
            return httpx.Response(200, json={"keys": [self.signer.verifier().key_string()]})
        return httpx.Response(404, json={"detail": "no such route"})


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    store = open_store(f"sqlite:///{tmp_path / 'proofs.db'}", upgrade=True)
    ledger = Ledger(store)
    ledger.append("alpha", f.setup_events(), "test")
    for i in range(20):
        ledger.append("alpha", [f.mask_created(f"p-{i}")], "test")
    yield StandIn(store, "alpha", "ledger.test/alpha")
    store.close()


def _proof_client(stand_in: StandIn) -> LedgerClient:
    return LedgerClient("http://ledger.test", "t", transport=httpx.MockTransport(stand_in.handle),
                        verifiers=[stand_in.signer.verifier()])  # fmt: skip


def test_client_checks_checkpoints_and_proofs(stand_in: StandIn) -> None:
    old = stand_in.checkpoint(9)
    new = stand_in.checkpoint(26)
    with _proof_client(stand_in) as client:
        assert [k.key_string() for k in client.verifier_keys()] == [
            stand_in.signer.verifier().key_string()
        ]
        assert client.verified_checkpoint("alpha") == new
        assert client.verified_checkpoint("alpha", size=9) == old
        for seq in (0, 8, 25):
            entry = client.verify_inclusion("alpha", seq, new)
            assert json.loads(entry.raw)["seq"] == seq
        client.verify_inclusion("alpha", 3, old)
        client.verify_consistency("alpha", old, new)
        assert client.audit("alpha", trusted=old) == new
        with pytest.raises(NoteError):
            client.verified_checkpoint(
                "alpha", verifiers=[generate_signer("someone-else").verifier()]
            )
        with pytest.raises(ProofError):
            client.verify_inclusion("alpha", 5, new, entry=b'{"forged":true}')


def test_client_refuses_a_rewritten_log(stand_in: StandIn) -> None:
    old = stand_in.checkpoint(9)
    new = stand_in.checkpoint(26)
    flipped = "0" * 64

    def tamper(path: str, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("inclusion_path", "consistency_path"):
            if body.get(key):
                body[key][0] = flipped
        if "entry" in body:
            body["entry"] = body["entry"].replace('"alice"', '"mallory"')
        return body

    stand_in.tamper = tamper
    with _proof_client(stand_in) as client:
        with pytest.raises(ProofError):
            client.verify_consistency("alpha", old, new)
        with pytest.raises(ProofError):
            client.verify_inclusion("alpha", 12, new)
        forked = Checkpoint(new.origin, new.size, bytes(32))
        stand_in.tamper = lambda path, body: body
        with pytest.raises(ProofError):
            client.verify_consistency("alpha", old, forked)


def test_live_checkpoint_endpoints(live: tuple[LiveServer, dict[str, str], Path]) -> None:
    server, secrets, _ = live
    doc = httpx.get(f"{server.url}/v1/openapi.json").json()
    if "/v1/projects/{project}/checkpoints/latest" not in doc["paths"]:
        pytest.skip("the checkpoint and proof endpoints are not served yet")
    with LedgerClient(server.url, secrets["auditor"]) as auditor:
        keys = auditor.verifier_keys()
        assert keys
        first = auditor.audit("alpha", verifiers=keys)
        with LedgerClient(server.url, secrets["writer"]) as writer:
            writer.append("alpha", [f.mask_created(f"live-{uuid.uuid4().hex[:8]}")])
        auditor.verify_inclusion("alpha", first.size - 1, first)
        assert auditor.audit("alpha", trusted=first, verifiers=keys).size >= first.size


def test_concurrent_use_of_one_client(live: tuple[LiveServer, dict[str, str], Path]) -> None:
    seqs: list[int] = []
    lock = threading.Lock()
    with _client(live, "writer") as writer:

        def work() -> None:
            for _ in range(5):
                seq = writer.append_one("alpha", f.mask_created(f"t-{uuid.uuid4().hex[:10]}")).seq
                with lock:
                    seqs.append(seq)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(seqs) == 20 and len(set(seqs)) == 20
