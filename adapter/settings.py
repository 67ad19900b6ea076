"""Settings from the environment (`BATON_*`, `HUBSPOT_*`, `SALESFORCE_*`, `REDIS_URL`).

Secrets stay in the mapping and never reach a log line: `Settings.__repr__` masks them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from adapter.errors import ConfigurationError

SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "SESSION")


@dataclass(frozen=True)
class Settings:
    """Environment-style settings. Connectors read their own keys from `values`."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: str) -> "Settings":
        source = dict(os.environ if environ is None else environ)
        source.update({k: v for k, v in overrides.items() if v is not None})
        return cls(source)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else default

    def require(self, name: str, why: str = "") -> str:
        value = self.get(name)
        if value is None:
            hint = f" ({why})" if why else ""
            raise ConfigurationError(f"{name} is not set{hint}")
        return value

    def get_list(self, name: str) -> list[str]:
        return [part.strip() for part in (self.get(name) or "").split(",") if part.strip()]

    def get_float(self, name: str, default: float) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None

    def with_values(self, **values: str) -> "Settings":
        merged = dict(self.values)
        merged.update(values)
        return Settings(merged)

    @property
    def data_dir(self) -> Path:
        """Where embedded Redis and other local state live (`BATON_DATA_DIR`, default ./.baton)."""
        return Path(self.get("BATON_DATA_DIR", ".baton")).resolve()

    @property
    def redis_url(self) -> str | None:
        """None means: run an embedded Redis under the data directory."""
        return self.get("REDIS_URL")

    @property
    def policy_path(self) -> str | None:
        return self.get("BATON_POLICY")

    @property
    def public_url(self) -> str | None:
        return self.get("BATON_PUBLIC_URL")

    def __repr__(self) -> str:
        shown = {
            k: ("***" if any(m in k.upper() for m in SECRET_MARKERS) else v)
            for k, v in sorted(self.values.items())
            if k.startswith(("BATON_", "HUBSPOT_", "SALESFORCE_", "REDIS_"))
        }
        return f"Settings({shown})"
