"""Settings: one name each, read from ``LEDGER_*`` environment variables or a TOML file.

The file is the one ``LEDGER_CONFIG`` names (keys are the setting names in lower case,
without the prefix). The environment wins over the file. The CLI, the service and the
README use these same names and defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ledger.errors import ConfigError, FieldError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="forbid", frozen=True)

    #: folder for the SQLite file and the generated signing key
    data_dir: Path = Path("ledger-data")
    #: ``sqlite:///path/to/file.db`` or ``postgresql://user@host/db``; empty means
    #: ``sqlite:///<data_dir>/ledger.db``
    database_url: str = ""
    #: Ed25519 signing key in note format (``PRIVATE+KEY+...``); empty means
    #: ``<data_dir>/signing.key``
    signing_key_file: Path | None = None
    #: extra verifier keys (old, rotated keys), one per line
    verifier_keys_file: Path | None = None
    #: checkpoint origin line is ``<origin_prefix>/<project>``
    origin_prefix: str = "annotation-ledger.local"
    #: issue a checkpoint automatically after this many new entries (0: never)
    checkpoint_every: int = Field(default=1000, ge=0)
    #: ... or after this many seconds with new entries (0: never)
    checkpoint_interval: float = Field(default=60.0, ge=0)
    #: largest accepted batch of events in one append
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    #: largest accepted HTTP request body, in bytes
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: SQLite busy timeout, in seconds
    sqlite_busy_timeout: float = Field(default=30.0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: seconds a service process trusts a token it has checked before asking the
    #: database again (a revocation reaches every process within this time; 0: no cache)
    token_cache_seconds: float = Field(default=2.0, ge=0, le=300)
    #: shared secret Label Studio sends in ``X-Ledger-Webhook-Secret`` (empty: endpoint off)
    label_studio_secret: str = ""
    #: secret of CVAT's webhook signature ``X-Signature-256`` (empty: endpoint off)
    cvat_webhook_secret: str = ""
    #: key that signs console session cookies; empty means ``<data_dir>/console.key``
    console_secret_key: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("LEDGER_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def effective_signing_key_file(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing.key"

    @property
    def uses_default_sqlite(self) -> bool:
        return not self.database_url


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning any problem into a ConfigError that names the setting."""
    config_file = os.environ.get("LEDGER_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"LEDGER_CONFIG names {config_file}, which is not a file")
    try:
        return Settings(**overrides)
    except ValidationError as e:
        errors = [
            FieldError("LEDGER_" + ".".join(str(p) for p in err["loc"]).upper(), err["msg"])
            for err in e.errors(include_url=False)
        ]
        raise ConfigError("bad setting: " + "; ".join(str(x) for x in errors)) from e
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read settings: {e}") from e
