"""REST resources of the Salesforce emulator under /services/data.

Versions, limits, describe, sObject rows, sObject Collections and SOQL with cursors.
Authentication, API-usage accounting and fault injection happen before these handlers run
(see `emulator.py`); the handlers only read `g.user_id` and `g.api_version`.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, g, request

from .emulator_schema import object_for_id
from .emulator_wire import DmlError, SalesforceError, to_json_value

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator

__all__ = ["rest_blueprint", "json_response", "COLLECTION_LIMIT", "DEFAULT_BATCH_SIZE"]

COLLECTION_LIMIT = 200
DEFAULT_BATCH_SIZE = 2000
_VERSIONS = ("55.0", "56.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
_DATA = "/services/data/v<version>"


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, content_type="application/json;charset=UTF-8")


def rest_blueprint(emulator: "SalesforceEmulator") -> Blueprint:
    blueprint = Blueprint("salesforce_rest", __name__)
    state = emulator.state
    cursors = _Cursors(emulator)

    def base() -> str:
        return f"/services/data/v{g.api_version}"

    def auto_assign() -> bool:
        # Assignment rules run unless the caller opts out with `Sforce-Auto-Assign: FALSE`.
        return request.headers.get("Sforce-Auto-Assign", "TRUE").strip().upper() != "FALSE"

    def body_json() -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError as error:
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {error}") from None

    def shaped(sobject: str, record: dict, fields: list[str] | None = None) -> dict:
        obj = state.object_def(sobject)
        names = [f.name for f in obj.fields] if fields is None else [_field(obj, name).name for name in fields]
        result = {"attributes": {"type": obj.name, "url": f"{base()}/sobjects/{obj.name}/{record['Id']}"}}
        for name in names:
            value = record.get(name)
            if obj.get_field(name).type == "base64":  # type: ignore[union-attr]
                value = f"{base()}/sobjects/{obj.name}/{record['Id']}/{name}" if value is not None else None
            result[name] = to_json_value(value)
        return result

    # ---------------------------------------------------------------- discovery
    @blueprint.get("/services/data")
    def versions() -> Response:
        return json_response([{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in _VERSIONS])

    @blueprint.get(_DATA)
    def resources(version: str) -> Response:
        names = ("sobjects", "query", "queryAll", "composite", "limits")
        return json_response({name: f"{base()}/{name}" for name in names})

    @blueprint.get(f"{_DATA}/limits")
    def limits(version: str) -> Response:
        used = emulator.api_usage
        return json_response({
            "DailyApiRequests": {"Max": emulator.daily_api_limit, "Remaining": max(emulator.daily_api_limit - used, 0)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
        })

    @blueprint.get(f"{_DATA}/sobjects")
    def global_describe(version: str) -> Response:
        return json_response({"encoding": "UTF-8", "maxBatchSize": COLLECTION_LIMIT, "sobjects": [
            _object_summary(obj, base()) for obj in state.schema.values()
        ]})

    @blueprint.get(f"{_DATA}/sobjects/<Type>/describe")
    def describe(version: str, Type: str) -> Response:
        obj = state.object_def(Type)
        summary = _object_summary(obj, base())
        summary.update(
            fields=[f.describe() for f in obj.fields],
            childRelationships=[{"childSObject": c.child, "field": c.field, "relationshipName": c.name,
                                 "cascadeDelete": False, "deprecatedAndHidden": False} for c in obj.children],
            recordTypeInfos=[],
        )
        return json_response(summary)

    # ---------------------------------------------------------------- one record
    @blueprint.route(f"{_DATA}/sobjects/<Type>", methods=["GET", "POST"])
    def sobject_root(version: str, Type: str) -> Response:
        obj = state.object_def(Type)
        if request.method == "GET":
            return json_response({"objectDescribe": _object_summary(obj, base()), "recentItems": []})
        values = body_json()
        if not isinstance(values, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        if "Id" in values:
            raise SalesforceError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call")
        record_id = _raise_dml(lambda: state.insert(obj.name, values, actor=g.user_id, auto_assign=auto_assign()))
        return json_response({"id": record_id, "success": True, "errors": []}, 201)

    @blueprint.route(f"{_DATA}/sobjects/<Type>/<Id>", methods=["GET", "PATCH", "DELETE"])
    def sobject_row(version: str, Type: str, Id: str) -> Response:
        obj = state.object_def(Type)
        found = state.get(Id)
        if found is None or found[0] != obj.name:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        if request.method == "GET":
            fields = request.args.get("fields")
            return json_response(shaped(obj.name, found[1], fields.split(",") if fields else None))
        if request.method == "PATCH":
            values = body_json()
            _raise_dml(lambda: state.update(obj.name, Id, values, actor=g.user_id, auto_assign=auto_assign()))
        else:
            result = state.save([("delete", obj.name, Id, {})], actor=g.user_id, all_or_none=True,
                                auto_assign=False)[0]
            if not result.success:
                raise SalesforceError(400, result.errors[0]["statusCode"], result.errors[0]["message"])
        return Response(status=204)

    @blueprint.get(f"{_DATA}/sobjects/<Type>/<Id>/<Field>")
    def sobject_blob(version: str, Type: str, Id: str, Field: str) -> Response:
        found = state.get(Id)
        definition = state.object_def(Type).get_field(Field)
        if found is None or definition is None or definition.type != "base64":
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        return Response(found[1].get(definition.name) or b"", 200, content_type="application/octet-stream")

    # ---------------------------------------------------------------- sObject Collections
    @blueprint.route(f"{_DATA}/composite/sobjects", methods=["POST", "PATCH", "DELETE"])
    def collections(version: str) -> Response:
        if request.method == "DELETE":
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            _check_collection_size(ids)
            # An id of no known object fails per record (INVALID_CROSS_REFERENCE_KEY), not the whole call.
            operations = [("delete", object_for_id(i) or "Account", i, {}) for i in ids]
            all_or_none = request.args.get("allOrNone", "false").lower() == "true"
        else:
            payload = body_json()
            if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
                raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body must have a 'records' array")
            records = payload["records"]
            _check_collection_size(records)
            all_or_none = bool(payload.get("allOrNone", False))
            operations = [_collection_operation(request.method, record) for record in records]
        results = state.save(operations, actor=g.user_id, all_or_none=all_or_none, auto_assign=auto_assign())
        return json_response([r.as_json() for r in results])

    @blueprint.get(f"{_DATA}/composite/sobjects/<Type>")
    def collection_retrieve(version: str, Type: str) -> Response:
        obj = state.object_def(Type)
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        fields = [f for f in request.args.get("fields", "").split(",") if f]
        if not ids or not fields:
            raise SalesforceError(400, "MISSING_ARGUMENT", "Both ids and fields are required")
        if len(ids) > 2000:
            raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "too many ids: at most 2000 are allowed")
        results = []
        for record_id in ids:
            found = state.get(record_id)
            results.append(shaped(obj.name, found[1], fields) if found and found[0] == obj.name else None)
        return json_response(results)

    # ---------------------------------------------------------------- SOQL
    @blueprint.get(f"{_DATA}/query")
    def query(version: str) -> Response:
        return cursors.start(request.args.get("q", ""), include_deleted=False, endpoint="query")

    @blueprint.get(f"{_DATA}/queryAll")
    def query_all(version: str) -> Response:
        return cursors.start(request.args.get("q", ""), include_deleted=True, endpoint="queryAll")

    @blueprint.get(f"{_DATA}/query/<locator>")
    @blueprint.get(f"{_DATA}/queryAll/<locator>", endpoint="query_all_more")
    def query_more(version: str, locator: str) -> Response:
        return cursors.page(locator)

    return blueprint


class _Cursors:
    """Query locators: results are materialized once, then served in batches like a real cursor."""

    def __init__(self, emulator: "SalesforceEmulator") -> None:
        self._emulator = emulator
        self._open: dict[str, tuple[list[dict], int, str]] = {}
        self._lock = threading.Lock()

    def start(self, text: str, *, include_deleted: bool, endpoint: str) -> Response:
        result = self._emulator.query_engine.execute(text, include_deleted=include_deleted,
                                                     api_version=g.api_version)
        self._emulator.calls[f"SOQL {result.sobject}"] += 1
        batch = _batch_size()
        if len(result.records) <= batch:
            return json_response({"totalSize": result.total_size, "done": True, "records": result.records})
        locator = self._emulator.state.ids.new("01g")
        with self._lock:
            self._open[locator] = (result.records, batch, endpoint)
        return self._answer(locator, 0)

    def page(self, locator: str) -> Response:
        cursor_id, _, offset = locator.partition("-")
        with self._lock:
            cursor = self._open.get(cursor_id)
        if cursor is None or not offset.isdigit():
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._answer(cursor_id, int(offset))

    def _answer(self, cursor_id: str, offset: int) -> Response:
        records, batch, endpoint = self._open[cursor_id]
        chunk = records[offset:offset + batch]
        done = offset + batch >= len(records)
        payload: dict[str, Any] = {"totalSize": len(records), "done": done}
        if done:
            with self._lock:
                self._open.pop(cursor_id, None)
        else:
            payload["nextRecordsUrl"] = f"/services/data/v{g.api_version}/{endpoint}/{cursor_id}-{offset + batch}"
        payload["records"] = chunk
        return json_response(payload)


def _batch_size() -> int:
    options = request.headers.get("Sforce-Query-Options", "")
    for option in options.split(","):
        key, _, value = option.strip().partition("=")
        if key.strip() == "batchSize" and value.strip().isdigit():
            return min(max(int(value), 200), DEFAULT_BATCH_SIZE)
    return DEFAULT_BATCH_SIZE


def _check_collection_size(items: list) -> None:
    if len(items) > COLLECTION_LIMIT:
        raise SalesforceError(400, "EXCEEDED_ID_LIMIT",
                              f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call")


def _collection_operation(method: str, record: Any) -> tuple[str, str, str | None, dict]:
    if not isinstance(record, dict) or not isinstance(record.get("attributes"), dict) \
            or not record["attributes"].get("type"):
        raise SalesforceError(400, "JSON_PARSER_ERROR",
                              "Each record in an sObject Collections request must have attributes.type")
    values = {k: v for k, v in record.items() if k != "attributes"}
    sobject = record["attributes"]["type"]
    if method == "POST":
        return "insert", sobject, None, values
    return "update", sobject, values.pop("Id", None), values


def _raise_dml(action: Any) -> Any:
    try:
        return action()
    except DmlError as error:
        raise SalesforceError(400, error.status_code, error.message, error.fields) from None


def _field(obj: Any, name: str) -> Any:
    definition = obj.get_field(name.strip())
    if definition is None:
        raise SalesforceError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
    return definition


def _object_summary(obj: Any, base: str) -> dict:
    return {
        "name": obj.name, "label": obj.label or obj.name, "labelPlural": (obj.label or obj.name) + "s",
        "keyPrefix": obj.key_prefix or None, "custom": False, "createable": obj.createable,
        "updateable": obj.updateable,
        "deletable": obj.updateable, "queryable": True, "retrieveable": True, "searchable": obj.updateable,
        "urls": {"sobject": f"{base}/sobjects/{obj.name}", "describe": f"{base}/sobjects/{obj.name}/describe",
                 "rowTemplate": f"{base}/sobjects/{obj.name}/{{ID}}"},
    }
