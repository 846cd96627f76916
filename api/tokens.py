"""Tokens: who am I; create, list and revoke (admin tokens for all projects only)."""

from __future__ import annotations

from flask import Blueprint

from api.http import parse_body
from api.models import TokenCreate, TokenCreated, TokenInfo, TokenList
from api.spec import operation
from api.state import current_token, state
from ledger.auth import Token, check_token_id

bp = Blueprint("tokens", __name__)

_ID_SCHEMA = {"type": "string", "pattern": "^[0-9a-f]{16}$"}


def _info(token: Token) -> TokenInfo:
    return TokenInfo.model_validate(token.as_dict())


@operation(
    bp,
    "/v1/whoami",
    summary="The calling token: name, role, project scope, principal",
    tag="tokens",
    response=TokenInfo,
)
def whoami() -> TokenInfo:
    return _info(current_token())


@operation(
    bp,
    "/v1/tokens",
    summary="List tokens (never their secrets)",
    tag="tokens",
    response=TokenList,
    action="tokens.manage",
)
def list_tokens() -> TokenList:
    return TokenList(tokens=[_info(t) for t in state().tokens.list()])


@operation(
    bp,
    "/v1/tokens",
    "POST",
    summary="Create a token; its secret is in this answer only",
    tag="tokens",
    response=TokenCreated,
    status=201,
    body=TokenCreate,
    action="tokens.manage",
    errors=(409,),
)
def create_token() -> tuple[TokenCreated, int]:
    body = parse_body(TokenCreate)
    token, secret = state().tokens.create(
        body.role, project=body.project, name=body.name, created_by=current_token().principal
    )
    return TokenCreated(**_info(token).model_dump(), token=secret), 201


@operation(
    bp,
    "/v1/tokens/<token_id>",
    "DELETE",
    summary="Revoke a token (it stays listed, with revoked_at)",
    tag="tokens",
    response=TokenInfo,
    action="tokens.manage",
    errors=(404, 422),
    path_schemas={"token_id": _ID_SCHEMA},
)
def revoke_token(token_id: str) -> TokenInfo:
    check_token_id(token_id, "path.token_id")
    return _info(state().tokens.revoke(token_id))
