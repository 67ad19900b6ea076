"""Validation of the emulator's traffic against HubSpot's published OpenAPI specs.

Every request is checked against the operation the real API documents, and every answer the
emulator produces is checked against the documented response schema: a request HubSpot would
refuse is refused, and a response that strays from HubSpot's contract is reported as a bug in
the emulator. The specs are read from disk (never vendored) and compiled once per process.

The published specs are stricter than the live API in a few places; `_apply_errata` relaxes
exactly those, so the emulator neither refuses what HubSpot accepts nor hides what it sends.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from werkzeug.datastructures import Headers, ImmutableMultiDict

from .emulator_catalog import OBJECT_TYPES, resolve_object_type

__all__ = ["SpecValidator", "SpecViolation", "default_specs_dir", "load_validator"]

HUBSPOT_HOST = "https://api.hubapi.com"  # the server every spec declares


def default_specs_dir() -> Path:
    """`$BATON_HUBSPOT_SPECS`, else `<repo>/../shared/specs/hubspot`."""
    configured = os.environ.get("BATON_HUBSPOT_SPECS")
    if configured:
        return Path(configured)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "specs" / "hubspot"


class SpecViolation(NamedTuple):
    direction: str  # "request" or "response"
    method: str
    path: str
    status: int | None
    message: str

    def __str__(self) -> str:
        status = f" -> {self.status}" if self.status else ""
        return f"{self.direction} {self.method} {self.path}{status}: {self.message}"


@dataclass
class _SpecRequest:
    """The request protocol openapi-core reads, with the path rewritten to the spec's form."""

    path: str
    method: str
    parameters: object
    content_type: str
    body: bytes | None
    host_url: str = HUBSPOT_HOST


@dataclass
class _SpecResponse:
    status_code: int
    data: bytes
    content_type: str = "application/json"
    headers: Headers = field(default_factory=Headers)


def _schemas(spec: dict) -> dict:
    return spec.get("components", {}).get("schemas", {})


def _apply_errata(spec: dict) -> dict:
    """Relax the published specs where the live API is known to differ."""
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                # The emulator checks the bearer token itself; openapi-core cannot check oauth2.
                operation.pop("security", None)
    spec.pop("security", None)
    for response in spec.get("components", {}).get("responses", {}).values():
        # Error bodies are declared as */*, which openapi-core leaves undecoded; HubSpot sends JSON.
        content = response.get("content", {})
        if "*/*" in content:
            content["application/json"] = content.pop("*/*")
    schemas = _schemas(spec)
    relaxed_required = {
        # HubSpot accepts searches, batch reads and creates that omit these members; its own
        # Python client omits them whenever they are None.
        "PublicObjectSearchRequest": [],
        "BatchReadInputSimplePublicObjectId": ["inputs"],
        "SimplePublicObjectInputForCreate": ["properties"],
        "SimplePublicObjectBatchInputForCreate": ["properties"],
    }
    for name, required in relaxed_required.items():
        if name in schemas:
            schemas[name]["required"] = required
    search = schemas.get("PublicObjectSearchRequest")
    if search:
        # Documented examples and the live API take sorts as objects; the spec says strings.
        search["properties"]["sorts"]["items"] = {"oneOf": [
            {"type": "string"},
            {"type": "object", "required": ["propertyName"], "properties": {
                "propertyName": {"type": "string"},
                "direction": {"type": "string", "enum": ["ASCENDING", "DESCENDING"]}}},
        ]}
    for name in ("SimplePublicObject", "SimplePublicObjectWithAssociations"):
        if name in schemas:
            # A requested property without a value comes back as null, not omitted.
            schemas[name]["properties"]["properties"]["additionalProperties"]["nullable"] = True
    if "AssociationSpecWithLabel" in schemas:
        # Unlabeled (default) association types come back with "label": null.
        schemas["AssociationSpecWithLabel"]["properties"]["label"]["nullable"] = True
    return spec


def _describe(error: BaseException) -> str:
    """The innermost useful messages of an openapi-core error chain."""
    parts, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        schema_errors = getattr(current, "schema_errors", None)
        if schema_errors:
            for schema_error in list(schema_errors)[:5]:
                where = "/".join(str(p) for p in getattr(schema_error, "absolute_path", ()))
                parts.append(f"{where or '<root>'}: {getattr(schema_error, 'message', schema_error)}")
        else:
            parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "; ".join(dict.fromkeys(p for p in parts if p))


class SpecValidator:
    """Compiled validators for every spec file, and the map from emulator paths to them."""

    def __init__(self, specs_dir: Path):
        from openapi_core import Config, OpenAPI  # imported here: only needed when specs exist

        self.specs_dir = Path(specs_dir)
        self._lock = threading.Lock()  # openapi-core's lazy schema resolution is not thread-safe
        self._apis: dict[str, object] = {}
        self._object_segments: dict[str, str] = {}  # object type -> its path segment in its spec
        for path in sorted(self.specs_dir.glob("*.json")):
            spec = _apply_errata(json.loads(path.read_text()))
            # Skip openapi-spec-validator's full check of the document: it costs seconds and
            # these are HubSpot's own published files.
            self._apis[path.stem] = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
            if path.stem in OBJECT_TYPES:
                first = next(iter(spec["paths"]))  # e.g. /crm/v3/objects/0-3
                self._object_segments[path.stem] = first.split("/")[4]

    def _route(self, path: str) -> tuple[object, str] | None:
        # The client lists owners at "/crm/v3/owners/"; the spec (and HubSpot) ignore the slash.
        path = path.rstrip("/") or "/"
        parts = path.split("/")
        if path.startswith("/crm/v3/objects/") and len(parts) > 4:
            object_type = resolve_object_type(parts[4])
            if object_type is None or object_type.name not in self._apis:
                return None
            parts[4] = self._object_segments[object_type.name]
            return self._apis[object_type.name], "/".join(parts)
        for prefix, stem in (("/crm/v4/", "associations"), ("/crm/v3/owners", "crmOwners"),
                             ("/crm/v3/pipelines/", "pipelines"), ("/crm/v3/properties/", "properties")):
            if path.startswith(prefix) and stem in self._apis:
                return self._apis[stem], path
        return None

    def covers(self, path: str) -> bool:
        return self._route(path) is not None

    def _request(self, spec_path: str, method: str, query, headers, body: bytes | None,
                 content_type: str | None) -> _SpecRequest:
        from openapi_core.datatypes import RequestParameters

        parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(headers))
        return _SpecRequest(spec_path, method.lower(), parameters,
                            content_type or "application/json", body or None)

    def check_request(self, method: str, path: str, query, headers, body: bytes | None,
                      content_type: str | None) -> str | None:
        """None if the request conforms to the spec, else what is wrong with it."""
        routed = self._route(path)
        if routed is None:
            return None
        api, spec_path = routed
        request = self._request(spec_path, method, query, headers, body, content_type)
        try:
            with self._lock:
                api.validate_request(request)
        except Exception as error:  # openapi-core raises a family of OpenAPIError subclasses
            return _describe(error)
        return None

    def check_response(self, method: str, path: str, query, headers, body: bytes | None,
                       content_type: str | None, status: int, response_body: bytes,
                       response_content_type: str | None) -> str | None:
        routed = self._route(path)
        if routed is None:
            return None
        api, spec_path = routed
        request = self._request(spec_path, method, query, headers, body, content_type)
        response = _SpecResponse(status, response_body, response_content_type or "application/json")
        try:
            with self._lock:
                api.validate_response(request, response)
        except Exception as error:
            return _describe(error)
        return None


_CACHE: dict[Path, SpecValidator] = {}
_CACHE_LOCK = threading.Lock()


def load_validator(specs_dir: str | os.PathLike | None = None) -> SpecValidator | None:
    """The process-wide validator for a specs folder, or None when the folder is absent."""
    directory = Path(specs_dir) if specs_dir else default_specs_dir()
    if not directory.is_dir():
        return None
    key = directory.resolve()
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = SpecValidator(key)
        return _CACHE[key]
