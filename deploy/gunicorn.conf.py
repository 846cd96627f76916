"""gunicorn configuration for the annotation ledger.

    gunicorn -c deploy/gunicorn.conf.py api.wsgi:app

The settings live in the package (``api/gunicorn_config.py``, documented there) so that
``ledger serve`` uses the same ones from an installed wheel. Override any of them below,
or per run on the command line (``--workers 8``) or in ``GUNICORN_CMD_ARGS``.
"""

from api.gunicorn_config import *  # noqa: F403
