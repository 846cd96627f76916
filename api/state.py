"""What one app (one gunicorn worker) holds: settings, store, ledger, tokens, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g

from api.metrics import Metrics
from ledger.auth import Token, TokenStore
from ledger.config import Settings
from ledger.service import Ledger
from ledger.store import Store


@dataclass
class State:
    settings: Settings
    store: Store
    ledger: Ledger
    tokens: TokenStore
    metrics: Metrics


def state() -> State:
    """The current app's state."""
    found: State = current_app.extensions["ledger"]
    return found


def current_token() -> Token:
    """The token that authenticated this request (operations with ``auth=True``)."""
    token: Token = g.token
    return token
