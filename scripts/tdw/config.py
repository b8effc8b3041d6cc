"""Settings read from the environment, with embedded defaults.

Every setting has a default that works on a fresh checkout; a real deployment overrides them
with environment variables (see ``profiles.yml.example`` and the README).

| variable | default | meaning |
|---|---|---|
| ``TDW_HOME`` | ``<repo>/.tdw`` | local state: embedded PostgreSQL data folder, logs, exports, lock |
| ``TDW_DATA_DIR`` | ``<repo>/../shared/data`` | reference, geo and ICPE input files |
| ``TDW_WAREHOUSE_DSN`` | (embedded server, database ``warehouse``) | libpq connection string of the warehouse |
| ``TDW_SOURCE_DSN`` | (embedded server, database ``trackdechets_source``, simulated) | production read-replica |
| ``TDW_EXPORT_DIR`` | ``$TDW_HOME/exports`` | where exports are published |
| ``TDW_ROLE_PREFIX`` | ``tdw`` | prefix of the roles the project creates (``tdw_analyst``, ``tdw_public``) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

WAREHOUSE_DB = "warehouse"
SOURCE_DB = "trackdechets_source"


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`load_settings`."""

    home: Path
    data_dir: Path
    warehouse_dsn: str | None
    source_dsn: str | None
    export_dir: Path
    role_prefix: str

    @property
    def pgdata(self) -> Path:
        """Data folder of the embedded PostgreSQL server."""
        return self.home / "pgdata"

    @property
    def embedded(self) -> bool:
        """True when the warehouse runs on the embedded server (no DSN given)."""
        return self.warehouse_dsn is None

    @property
    def reference_dir(self) -> Path:
        return self.data_dir / "reference"

    @property
    def icpe_dir(self) -> Path:
        return self.data_dir / "icpe"

    @property
    def geo_dir(self) -> Path:
        return self.data_dir / "geo"

    def role(self, name: str) -> str:
        """Name of a project role, e.g. ``role('public')`` -> ``tdw_public``."""
        return f"{self.role_prefix}_{name}"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("TDW_HOME") or REPO_ROOT / ".tdw").resolve()
    data_dir = Path(env.get("TDW_DATA_DIR") or REPO_ROOT.parent / "shared" / "data").resolve()
    return Settings(
        home=home,
        data_dir=data_dir,
        warehouse_dsn=env.get("TDW_WAREHOUSE_DSN") or None,
        source_dsn=env.get("TDW_SOURCE_DSN") or None,
        export_dir=Path(env.get("TDW_EXPORT_DIR") or home / "exports").resolve(),
        role_prefix=env.get("TDW_ROLE_PREFIX") or "tdw",
    )
