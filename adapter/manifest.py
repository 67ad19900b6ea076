"""`manifest.json`: the single declaration of what Baton adds to a CRM."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "manifest.json"
FIELD_TYPES = {"enumeration", "string", "datetime", "number", "bool"}


@dataclass(frozen=True)
class FieldSpec:
    """One visibility field: neutral name plus each CRM's own name for it."""

    name: str
    label: str
    type: str
    description: str
    options: tuple[tuple[str, str], ...]
    crm_names: Mapping[str, str]

    def name_in(self, crm: str) -> str:
        return self.crm_names[crm]


@lru_cache(maxsize=None)
def load_manifest(path: str | None = None) -> Mapping[str, Any]:
    with open(path or MANIFEST_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def field_specs(manifest: Mapping[str, Any] | None = None) -> tuple[FieldSpec, ...]:
    manifest = manifest if manifest is not None else load_manifest()
    crms = tuple(manifest["crms"])
    specs = []
    for raw in manifest["fields"]:
        if raw["type"] not in FIELD_TYPES:
            raise ValueError(f"manifest field {raw['name']}: unknown type {raw['type']!r}")
        specs.append(FieldSpec(
            name=raw["name"],
            label=raw["label"],
            type=raw["type"],
            description=raw.get("description", ""),
            options=tuple((o["value"], o["label"]) for o in raw.get("options", ())),
            crm_names={crm: raw[crm] for crm in crms if crm in raw},
        ))
    return tuple(specs)


def field_names_for(crm: str, manifest: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Neutral name -> the CRM's field name."""
    return {spec.name: spec.name_in(crm) for spec in field_specs(manifest)}
