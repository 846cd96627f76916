"""The HTTP service: a thin Flask layer over ``ledger``.

``create_app()`` builds one app per process (gunicorn imports ``api.wsgi:app`` in each
worker). Each area is a blueprint module with a ``bp``, listed in :data:`BLUEPRINTS`,
and optionally an ``init_app(app)`` called once the blueprint is registered (to hook
``state().ledger.on_append`` or start a timer). Views are declared with
``api.spec.operation``, which also puts them in the OpenAPI document. All business
logic stays in ``ledger``.

Importing this package is cheap and imports nothing else: ``api.gunicorn_config``
must set ``PROMETHEUS_MULTIPROC_DIR`` before ``prometheus_client`` is first imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from ledger.config import Settings

#: blueprint modules, each with a ``bp``; add an area with one line here
BLUEPRINTS = (
    "api.health",
    "api.openapi",
    "api.projects",
    "api.events",
    "api.instances",
    "api.tokens",
    "api.integrations",
    "api.console",
    "api.checkpoints",
    "api.releases",
    "api.qa",
    "api.queue",
)


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """The WSGI app. ``config`` is a ``Settings``, or overrides of the settings read
    from ``LEDGER_*`` variables and ``LEDGER_CONFIG`` (``None``: just those)."""
    from flask import Flask

    from api import logs, problems
    from api.metrics import Metrics
    from api.state import State
    from ledger.auth import TokenStore
    from ledger.config import Settings, load_settings
    from ledger.service import Ledger
    from ledger.store import open_store

    settings = config if isinstance(config, Settings) else load_settings(**dict(config or {}))
    url = settings.effective_database_url
    # The embedded default migrates itself; PostgreSQL is migrated by its owner with
    # `ledger db upgrade`, and /readyz fails until it is.
    store = open_store(
        url, upgrade=url.startswith("sqlite:"), sqlite_busy_timeout=settings.sqlite_busy_timeout
    )
    metrics = Metrics(store)
    app = Flask("api")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["LEDGER_MAX_BATCH"] = settings.max_batch
    app.extensions["ledger"] = State(
        settings=settings,
        store=store,
        ledger=Ledger(store, max_batch=settings.max_batch),
        tokens=TokenStore(store, cache_seconds=settings.token_cache_seconds),
        metrics=metrics,
    )
    logs.configure(app)
    problems.register(app)
    for name in BLUEPRINTS:
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
        # an area that needs more than routes (a hook on appends, a timer) says so here
        init_app = getattr(module, "init_app", None)
        if init_app is not None:
            init_app(app)
    return app
