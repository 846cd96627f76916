"""Operations: one decorator registers a route and describes it for OpenAPI.

Every view is declared with :func:`operation`, which authenticates the request, checks
the role (``action``, see ``ledger.auth.ACTIONS``) and the project scope, validates the
``project`` path parameter and the query string, and turns the view's return value
(a pydantic model, a dict, or a ``Response``) into the answer. ``api.openapi`` reads the
same declarations back from the app's URL map, so a blueprint added later (checkpoints,
releases) is documented by declaring its views the same way::

    bp = Blueprint("checkpoints", __name__)

    @operation(bp, "/v1/projects/<project>/checkpoints/latest", summary="Latest checkpoint",
               tag="checkpoints", response=None, content_type="text/plain",
               errors=(404,))
    def latest(project: str) -> Response: ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel

from api.http import json_response, parse_query
from api.security import authenticate
from ledger.auth import require
from ledger.service import check_project_name

#: statuses every authenticated operation can answer
AUTH_ERRORS = (401, 403)
#: statuses every operation can answer
COMMON_ERRORS = (503,)

View = Callable[..., Any]


@dataclass(frozen=True)
class Spec:
    """The OpenAPI facts of one operation."""

    method: str
    summary: str
    tag: str
    response: type[BaseModel] | None
    status: int
    query: type[BaseModel] | None
    #: a pydantic model, or the name of a schema in ``api.openapi.EXTRA_SCHEMAS``
    body: type[BaseModel] | str | None
    auth: bool
    action: str | None
    errors: tuple[int, ...]
    content_type: str
    description: str
    #: more success statuses: status -> description
    also: dict[int, str] = field(default_factory=dict)
    #: path parameters other than ``project``: name -> JSON schema
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def statuses(self) -> list[int]:
        found = set(self.errors) | set(COMMON_ERRORS)
        if self.auth:
            found |= set(AUTH_ERRORS)
        if self.query is not None or self.body is not None:
            found.add(422)
        if self.body is not None:
            found |= {400, 413, 415}
        return sorted(found)


def operation(
    bp: Blueprint,
    rule: str,
    method: str = "GET",
    *,
    summary: str,
    tag: str,
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | str | None = None,
    auth: bool = True,
    action: str | None = "read",
    errors: tuple[int, ...] = (),
    content_type: str = "application/json",
    description: str = "",
    also: dict[int, str] | None = None,
    path_schemas: dict[str, dict[str, Any]] | None = None,
) -> Callable[[View], View]:
    """Register ``rule`` on ``bp`` for ``method`` and record its OpenAPI description.

    The view gets the path parameters, plus ``query=`` (the validated query model)
    when ``query`` is given. With ``auth``, the request must carry a valid token and,
    when ``action`` is set, one whose role allows it on the ``project`` path parameter.
    """
    spec = Spec(
        method=method.upper(),
        summary=summary,
        tag=tag,
        response=response,
        status=status,
        query=query,
        body=body,
        auth=auth,
        action=action if auth else None,
        errors=tuple(errors),
        content_type=content_type,
        description=description,
        also=dict(also or {}),
        path_schemas=dict(path_schemas or {}),
    )

    def decorate(fn: View) -> View:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Response:
            project = kwargs.get("project")
            if spec.auth:
                token = authenticate()
                if project is not None:
                    check_project_name(project, "path.project")
                if spec.action is not None:
                    require(token, spec.action, project)
            elif project is not None:
                check_project_name(project, "path.project")
            if spec.query is not None:
                kwargs["query"] = parse_query(spec.query)
            result = fn(**kwargs)
            if isinstance(result, Response):
                return result
            if isinstance(result, tuple):
                body_value, code = result
                return json_response(body_value, code)
            return json_response(result, spec.status)

        view.openapi_spec = spec  # type: ignore[attr-defined]
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[spec.method])
        return view

    return decorate


def spec_of(view: Callable[..., Any]) -> Spec | None:
    found = getattr(view, "openapi_spec", None)
    return found if isinstance(found, Spec) else None
