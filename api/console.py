"""A read-only web console for auditors: ``/console/``.

Sign in with an auditor or admin token; the console keeps the token's id (never its
secret) in Flask's signed session cookie (HttpOnly, SameSite=Strict, Secure when the
request came over HTTPS, directly or through a proxy that sets ``X-Forwarded-Proto``)
and checks on every page that the token is still active. The cookie's key is
LEDGER_CONSOLE_SECRET_KEY, or ``<data_dir>/console.key`` (generated, mode 0600).

Pages: projects; a project's overview (log size, latest checkpoint, verify); an
instance's lineage with a PNG of each revision's mask (added pixels green, removed
red); releases (policy, hash, verify, diff); search by actor, guideline, image and
time; QA flags with the flagged-image PNG. Everything is server-rendered, without
scripts. The console only reads, except the session itself.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface

from api.state import state
from ledger.asof import parse_time
from ledger.auth import Token
from ledger.checkpoints import latest_checkpoint
from ledger.diff import diff as diff_states
from ledger.diff import parse_side, summarize
from ledger.entry import format_time
from ledger.errors import InvalidInput, LedgerError, NotFound, VerificationFailed
from ledger.lineage import Step, lineage
from ledger.masks import decode
from ledger.releases import list_releases, verify_release
from ledger.service import check_project_name
from ledger.verify import verify_log

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

CONSOLE_ROLES = ("auditor", "admin")
#: masks larger than this many pixels are not rendered
MAX_RENDER_PIXELS = 16_000_000
SEARCH_LIMIT = 500


class _SessionInterface(SecureCookieSessionInterface):
    def get_cookie_secure(self, app: Flask) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        return bool(request.is_secure or forwarded == "https")


def _secret_key(data_dir: Path, configured: str) -> str:
    if configured:
        return configured
    path = data_dir / "console.key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            text = path.read_text(encoding="utf-8").strip()
            if text:
                return text
            time.sleep(0.05)  # another worker is writing it
        raise
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        key = secrets.token_urlsafe(48)
        out.write(key + "\n")
    return key


def init_app(app: Flask) -> None:
    settings = state_of(app).settings
    app.secret_key = _secret_key(Path(settings.data_dir), settings.console_secret_key)
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="ledger_console",
        SESSION_COOKIE_PATH="/console",
    )


def state_of(app: Flask) -> Any:
    return app.extensions["ledger"]


# --- sessions --------------------------------------------------------------------------


def _signed_in() -> Token | None:
    token_id = session.get("tid")
    if not isinstance(token_id, str):
        return None
    try:
        token = state().tokens.get(token_id)
    except LedgerError:
        return None
    if not token.active or token.role not in CONSOLE_ROLES:
        return None
    return token


def _csrf() -> str:
    value = session.get("csrf")
    if not isinstance(value, str):
        value = secrets.token_urlsafe(24)
        session["csrf"] = value
    return value


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        abort(403, "the form has expired; reload the page and try again")


def page(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A console page: signed in, and the project (if any) within the token's scope."""

    @wraps(fn)
    def view(**kwargs: Any) -> Any:
        token = _signed_in()
        if token is None:
            session.pop("tid", None)
            return redirect(url_for("console.login_form"))
        project = kwargs.get("project")
        if project is not None:
            check_project_name(project, "path.project")
            if not token.in_scope(project):
                abort(403, f"this token may not read {project}")
            if state().store.head(project) is None:
                raise NotFound(f"project {project} does not exist")
        if request.method == "POST":
            _check_csrf()
        return fn(token=token, **kwargs)

    return view


def render(template: str, status: int = 200, **context: Any) -> Response:
    html = render_template(f"console/{template}", csrf=_csrf(), **context)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def login_form() -> Any:
    if _signed_in() is not None:
        return redirect(url_for("console.projects"))
    return render("login.html")


@bp.post("/login")
def login() -> Any:
    _check_csrf()
    secret = request.form.get("token", "").strip()
    message = "enter a token"
    if secret:
        try:
            token = state().tokens.authenticate(secret)
        except LedgerError:
            message = "this token is not valid"
        else:
            if token.role in CONSOLE_ROLES:
                session.clear()
                session["tid"] = token.id
                _csrf()
                return redirect(url_for("console.projects"))
            message = f"a {token.role} token may not use the console: use an auditor or admin token"
    return render("login.html", 403, error=message)


@bp.post("/logout")
def logout() -> Any:
    _check_csrf()
    session.clear()
    return redirect(url_for("console.login_form"))


# --- pages -----------------------------------------------------------------------------


@bp.get("/projects")
@page
def projects(token: Token) -> Any:
    heads = [h for h in state().store.projects() if token.in_scope(h.project)]
    return render("projects.html", token=token, heads=heads)


@bp.get("/p/<project>")
@page
def overview(token: Token, project: str) -> Any:
    st = state()
    head = st.store.head(project)
    checkpoint = latest_checkpoint(st.store, project)
    return render(
        "project.html",
        token=token,
        project=project,
        head=head,
        checkpoint=checkpoint,
        releases=len(list_releases(st.store, project)),
    )


@bp.post("/p/<project>/verify")
@page
def verify(token: Token, project: str) -> Any:
    report = verify_log(state().store, project)
    return render(
        "verify.html",
        token=token,
        project=project,
        report=report,
        root=report.root.hex() if report.root else "",
    )


def _mask_steps(steps: tuple[Step, ...]) -> list[tuple[Step, Any]]:
    """Mask steps with the segmentation in force after each."""
    out: list[tuple[Step, Any]] = []
    current: Any = None
    for step in steps:
        if step.op is None:
            continue
        if step.segmentation is not None:
            current = step.segmentation
        out.append((step, current))
    return out


@bp.get("/p/<project>/instances/<path:instance_id>")
@page
def instance(token: Token, project: str, instance_id: str) -> Any:
    lin = lineage(state().store, project, instance_id)
    return render(
        "instance.html",
        token=token,
        project=project,
        lin=lin,
        steps=lin.steps,
        mask_seqs={s.seq for s, _ in _mask_steps(lin.steps)},
        quote=quote,
    )


def _image_size(project: str, image_id: str) -> tuple[int, int]:
    rows = state().store.query(
        "SELECT width, height FROM images WHERE project = ? AND image_id = ?", (project, image_id)
    )
    if not rows:
        raise NotFound(f"image {image_id!r} is not registered")
    return int(rows[0]["height"]), int(rows[0]["width"])


def _png(pixels: npt.NDArray[np.uint8]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(out, format="PNG", optimize=False)
    return out.getvalue()


def revision_png(
    before: npt.NDArray[np.uint8] | None, after: npt.NDArray[np.uint8] | None, h: int, w: int
) -> bytes:
    """The mask after a revision: kept pixels blue, added green, removed red."""
    empty = np.zeros((h, w), dtype=bool)
    old = before.astype(bool) if before is not None else empty
    new = after.astype(bool) if after is not None else empty
    rgb = np.full((h, w, 3), 24, dtype=np.uint8)
    rgb[new & old] = (70, 130, 230)
    rgb[new & ~old] = (60, 200, 90)
    rgb[old & ~new] = (230, 60, 60)
    return _png(rgb)


@bp.get("/p/<project>/instances/<path:instance_id>/mask/<int:seq>.png")
@page
def mask_png(token: Token, project: str, instance_id: str, seq: int) -> Any:
    lin = lineage(state().store, project, instance_id)
    h, w = _image_size(project, lin.image_id)
    if h * w > MAX_RENDER_PIXELS:
        raise InvalidInput.field("image", f"the image is too large to render ({w}×{h})")
    previous: npt.NDArray[np.uint8] | None = None
    for step, seg in _mask_steps(lin.steps):
        now = None if step.op == "deleted" or seg is None else decode(seg, h, w)
        if step.seq == seq:
            response = Response(revision_png(previous, now, h, w), mimetype="image/png")
            response.headers["Cache-Control"] = "private, max-age=3600"
            return response
        previous = now
    raise NotFound(f"entry {seq} did not change the mask of {instance_id!r}")


@bp.get("/p/<project>/releases")
@page
def releases(token: Token, project: str) -> Any:
    found = list_releases(state().store, project)
    return render(
        "releases.html",
        token=token,
        project=project,
        releases=found,
        policies={r.name: json.dumps(r.policy.model_dump(mode="json")) for r in found},
    )


@bp.post("/p/<project>/releases/<name>/verify")
@page
def release_verify(token: Token, project: str, name: str) -> Any:
    try:
        check = verify_release(state().store, project, name)
        problems = list(check.problems)
    except VerificationFailed as e:
        check, problems = None, [e.message]
    return render(
        "release_check.html",
        token=token,
        project=project,
        name=name,
        check=check,
        problems=problems,
    )


@bp.get("/p/<project>/diff")
@page
def release_diff(token: Token, project: str) -> Any:
    store = state().store
    old_text = request.args.get("old", "")[:200]
    new_text = request.args.get("new", "")[:200]
    if not old_text or not new_text:
        raise InvalidInput.field("query", "choose two releases (old and new)")
    old = parse_side(store, project, old_text, loc="query.old")
    new = parse_side(store, project, new_text, loc="query.new")
    changes = list(diff_states(store, project, old, new))
    return render(
        "diff.html",
        token=token,
        project=project,
        old=old,
        new=new,
        summary=summarize(changes),
        changes=changes[:500],
        total=len(changes),
    )


@bp.get("/p/<project>/search")
@page
def search(token: Token, project: str) -> Any:
    args = {
        k: request.args.get(k, "").strip()[:200]
        for k in ("actor", "guideline", "image", "since", "until")
    }
    where, params = ["project = ?"], [project]
    for column, key in (("actor", "actor"), ("guideline", "guideline"), ("image_id", "image")):
        if args[key]:
            where.append(f"{column} = ?")
            params.append(args[key])
    for key, op in (("since", ">="), ("until", "<")):
        if args[key]:
            where.append(f"recorded_at {op} ?")
            params.append(format_time(parse_time(args[key], f"query.{key}")))
    rows: list[dict[str, Any]] = []
    if any(args.values()):
        rows = state().store.query(
            "SELECT seq, type, actor, instance_id, image_id, guideline, recorded_at FROM entries"
            f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT {SEARCH_LIMIT + 1}",
            params,
        )
    return render(
        "search.html",
        token=token,
        project=project,
        args=args,
        rows=rows[:SEARCH_LIMIT],
        more=len(rows) > SEARCH_LIMIT,
    )


@bp.get("/p/<project>/qa")
@page
def qa(token: Token, project: str) -> Any:
    from ledger.qa import qa_report

    report = qa_report(state().store, project)
    images = set(report.table.images)
    return render(
        "qa.html",
        token=token,
        project=project,
        flags=report.flags,
        pictured={f.image_id for f in report.flags if f.image_id in images and f.instance_ids},
        sha256=report.sha256,
    )


@bp.get("/p/<project>/qa/<path:image_id>.png")
@page
def qa_png(token: Token, project: str, image_id: str) -> Any:
    from ledger.qa import qa_report
    from ledger.qa.charts import flagged_image_png

    report = qa_report(state().store, project)
    return Response(flagged_image_png(report, image_id), mimetype="image/png")


@bp.get("/p/<project>/proofs/inclusion/<int:seq>/<int:size>")
@page
def inclusion(token: Token, project: str, seq: int, size: int) -> Any:
    """The same proof as ``/v1/projects/<project>/proofs/inclusion?index=&size=``, for
    the signed-in session (the API endpoint wants a bearer token)."""
    from ledger.proofs import inclusion_proof

    proof = inclusion_proof(state().store, project, seq, size)
    response = Response(
        json.dumps(proof.to_json(), indent=2), mimetype="application/json", status=200
    )
    response.headers["Cache-Control"] = "no-store"
    return response
