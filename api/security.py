"""Bearer tokens on requests. Token checks themselves live in ``ledger.auth``."""

from __future__ import annotations

from flask import g, request

from api.state import state
from ledger.auth import Token, Unauthorized


def authenticate() -> Token:
    """The token in ``Authorization: Bearer ...``, or Unauthorized (401).

    The token is never logged nor echoed: messages name it by its stored name only.
    """
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("this endpoint needs an Authorization: Bearer <token> header")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("use the Bearer scheme: Authorization: Bearer <token>")
    token = state().tokens.authenticate(credentials.strip())
    g.token = token
    g.principal = token.principal
    return token
