"""CRM objects v3 and associations v4, as HubSpot serves them.

Handlers only translate HTTP to store calls and back; HubSpot's rules live in the store.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, current_app, jsonify, request

from .emulator_catalog import (
    ASSOCIATION_TYPES, OBJECT_TYPES, ObjectType, default_association_type, resolve_object_type,
)
from .emulator_search import search_records
from .emulator_state import Actor, CrmError, CrmStore, Record, to_iso

__all__ = ["objects_api", "crm_error_response", "error_response", "MAX_BATCH_INPUTS"]

objects_api = Blueprint("hubspot_objects", __name__)
MAX_BATCH_INPUTS = 100
LIST_MAX_LIMIT = 100


# -- shared helpers -----------------------------------------------------------------------
def emulator():
    return current_app.extensions["hubspot_emulator"]


def store() -> CrmStore:
    return emulator().store


def api_actor() -> Actor:
    """API writes are attributed to the app that owns the token, as HubSpot does."""
    return Actor.integration(emulator().app_id)


def error_response(status: int, category: str, message: str, context: dict | None = None) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    if context:
        body["context"] = context
    response = jsonify(body)
    response.status_code = status
    return response


def crm_error_response(error: CrmError) -> Response:
    return error_response(error.status, error.category, error.message, error.context)


def object_type_or_404(name: str) -> ObjectType:
    object_type = resolve_object_type(name)
    if object_type is None:
        raise CrmError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")
    return object_type


def json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, (dict, list)):
        raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: the request body must be JSON.")
    return body


def batch_inputs(body: dict) -> list:
    inputs = body.get("inputs") or []
    if len(inputs) > MAX_BATCH_INPUTS:
        raise CrmError(400, "VALIDATION_ERROR",
                       f"Batch input size {len(inputs)} exceeds the limit of {MAX_BATCH_INPUTS} inputs.")
    return inputs


def names_from_query(key: str) -> list[str] | None:
    """A list parameter sent either repeated (?p=a&p=b) or comma-separated (?p=a,b)."""
    values = [part for value in request.args.getlist(key) for part in value.split(",") if part]
    return values or None


def query_flag(key: str) -> bool:
    return request.args.get(key, "false").lower() == "true"


def batch_envelope(results: list, errors: list | None = None, started: str | None = None) -> tuple[dict, int]:
    now = to_iso(store().clock())
    body = {"status": "COMPLETE", "results": results, "startedAt": started or now, "completedAt": now}
    if errors:
        body["errors"], body["numErrors"] = errors, len(errors)
    return body, 207 if errors else 200


def standard_error(category: str, message: str, ids: list[str]) -> dict:
    return {"status": "error", "category": category, "message": message, "context": {"ids": ids},
            "errors": [], "links": {}}


# -- rendering ------------------------------------------------------------------------------
def _association_name(type_id: int) -> str:
    from_type, to_type, label = ASSOCIATION_TYPES[type_id]
    base = f"{OBJECT_TYPES[from_type].singular}_to_{OBJECT_TYPES[to_type].singular}"
    has_primary = any(a == from_type and b == to_type and lab for a, b, lab in ASSOCIATION_TYPES.values())
    return f"{base}_unlabeled" if has_primary and not label else base


def render_record(record: Record, names: list[str] | None = None, history_names: list[str] | None = None,
                  association_types: list[str] | None = None) -> dict:
    object_type = OBJECT_TYPES[record.object_type]
    definitions = store().properties[record.object_type]
    wanted = list(names) if names is not None else list(object_type.default_properties)
    # HubSpot always answers with the id and the creation/modification stamps.
    for always in ("hs_object_id", object_type.created_property, object_type.modified_property):
        if always not in wanted:
            wanted.append(always)
    rendered = {
        "id": record.id,
        "properties": {n: record.properties.get(n) for n in wanted if n in definitions},
        "createdAt": to_iso(record.created_ms),
        "updatedAt": to_iso(record.updated_ms),
        "archived": record.archived,
    }
    if record.archived:
        rendered["archivedAt"] = to_iso(record.archived_ms)
    if history_names:
        rendered["propertiesWithHistory"] = {
            name: [_render_version(v) for v in reversed(record.history.get(name, []))]
            for name in history_names if name in definitions
        }
    if association_types:
        associations = {}
        for to_name in association_types:
            to_type = resolve_object_type(to_name)
            found = store().associated(record.object_type, record.id, to_type.name) if to_type else {}
            if found:
                associations[to_type.name] = {"results": [
                    {"id": to_id, "type": _association_name(tid)}
                    for to_id, tids in found.items() for tid in sorted(tids)]}
        if associations:
            rendered["associations"] = associations
    return rendered


def _render_version(version) -> dict:
    rendered = {"value": version.value, "timestamp": to_iso(version.timestamp_ms), "sourceType": version.source_type}
    if version.source_id is not None:
        rendered["sourceId"] = version.source_id
    if version.user_id is not None:
        rendered["updatedByUserId"] = version.user_id
    return rendered


def _inline_associations(object_type: ObjectType, associations: list | None) -> list[tuple[str, str, int]]:
    resolved = []
    for association in associations or []:
        to_id = str(association["to"]["id"])
        for spec in association.get("types") or []:
            type_id = int(spec["associationTypeId"])
            known = ASSOCIATION_TYPES.get(type_id)
            if known is None or known[0] != object_type.name:
                raise CrmError(400, "VALIDATION_ERROR",
                               f"{type_id} is not a valid association type id for {object_type.name}")
            resolved.append((known[1], to_id, type_id))
    return resolved


def _find(object_type: ObjectType, object_id: str, id_property: str | None, archived: bool = False) -> Record | None:
    if id_property and id_property != "hs_object_id":
        record = store().find_by_property(object_type.name, id_property, str(object_id))
        return record if record is not None and record.archived == archived else None
    return store().get(object_type.name, object_id, archived=archived)


# -- objects ----------------------------------------------------------------------------------
@objects_api.get("/crm/v3/objects/<object_type>")
def list_objects(object_type: str):
    object_type = object_type_or_404(object_type)
    limit = int(request.args.get("limit", 10))
    if not 0 < limit <= LIST_MAX_LIMIT:
        raise CrmError(400, "VALIDATION_ERROR", f"limit must be between 1 and {LIST_MAX_LIMIT}")
    after = int(request.args.get("after") or 0)
    with store().lock:
        records = [r for r in store().live_records(object_type.name, archived=query_flag("archived"))
                   if int(r.id) >= after]
        page = records[:limit]
        body = {"results": [render_record(r, names_from_query("properties"), names_from_query("propertiesWithHistory"),
                                          names_from_query("associations")) for r in page]}
    if len(records) > limit:
        next_id = records[limit].id
        body["paging"] = {"next": {"after": next_id, "link": f"{request.base_url}?after={next_id}"}}
    return body


@objects_api.get("/crm/v3/objects/<object_type>/<object_id>")
def get_object(object_type: str, object_id: str):
    object_type = object_type_or_404(object_type)
    with store().lock:
        record = _find(object_type, object_id, request.args.get("idProperty"), query_flag("archived"))
        if record is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.",
                           {"id": [object_id]})
        return render_record(record, names_from_query("properties"), names_from_query("propertiesWithHistory"),
                             names_from_query("associations"))


@objects_api.post("/crm/v3/objects/<object_type>")
def create_object(object_type: str):
    object_type = object_type_or_404(object_type)
    body = json_body()
    with store().lock:
        values = store().normalize_properties(object_type.name, body.get("properties") or {})
        record = store().create(object_type.name, values, api_actor(),
                                associations=_inline_associations(object_type, body.get("associations")))
        return render_record(record, list(values)), 201


@objects_api.patch("/crm/v3/objects/<object_type>/<object_id>")
def update_object(object_type: str, object_id: str):
    object_type = object_type_or_404(object_type)
    body = json_body()
    with store().lock:
        record = _find(object_type, object_id, request.args.get("idProperty"))
        if record is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.",
                           {"id": [object_id]})
        values = store().normalize_properties(object_type.name, body.get("properties") or {})
        record = store().update(object_type.name, record.id, values, api_actor())
        return render_record(record, list(values))


@objects_api.delete("/crm/v3/objects/<object_type>/<object_id>")
def archive_object(object_type: str, object_id: str):
    store().archive(object_type_or_404(object_type).name, object_id, api_actor())
    return "", 204


@objects_api.post("/crm/v3/objects/<object_type>/batch/read")
def batch_read(object_type: str):
    object_type = object_type_or_404(object_type)
    body = json_body()
    inputs = batch_inputs(body)
    started = to_iso(store().clock())
    with store().lock:
        results, missing = [], []
        for item in inputs:
            record = _find(object_type, str(item["id"]), body.get("idProperty"), query_flag("archived"))
            if record is None:
                missing.append(str(item["id"]))
            else:
                results.append(render_record(record, body.get("properties") or None,
                                             body.get("propertiesWithHistory") or None))
    errors = [standard_error(
        "OBJECT_NOT_FOUND",
        f"Could not get some {object_type.singular.upper()} objects, they may be deleted or not exist. "
        f"Check that ids are valid.", missing)] if missing else None
    return batch_envelope(results, errors, started)


@objects_api.post("/crm/v3/objects/<object_type>/batch/create")
def batch_create(object_type: str):
    object_type = object_type_or_404(object_type)
    inputs = batch_inputs(json_body())
    started = to_iso(store().clock())
    with store().lock:
        # Validate every input before writing any: HubSpot refuses an invalid batch as a whole.
        prepared = [(store().normalize_properties(object_type.name, item.get("properties") or {}),
                     _inline_associations(object_type, item.get("associations"))) for item in inputs]
        for _values, associations in prepared:
            for to_type, to_id, _type_id in associations:
                if store().get(to_type, to_id) is None:
                    raise CrmError(400, "VALIDATION_ERROR",
                                   f"One or more associations are invalid: {to_type} {to_id} does not exist")
        records = [store().create(object_type.name, values, api_actor(), associations=associations)
                   for values, associations in prepared]
        results = [render_record(r, list(values)) for r, (values, _a) in zip(records, prepared)]
    body, _status = batch_envelope(results, started=started)
    return body, 201


@objects_api.post("/crm/v3/objects/<object_type>/batch/update")
def batch_update(object_type: str):
    object_type = object_type_or_404(object_type)
    inputs = batch_inputs(json_body())
    ids = [str(item["id"]) for item in inputs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CrmError(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {duplicates}. "
                       "IDs must be unique", {"ids": duplicates})
    started = to_iso(store().clock())
    with store().lock:
        prepared = [(item, store().normalize_properties(object_type.name, item.get("properties") or {}))
                    for item in inputs]
        results, missing = [], []
        for item, values in prepared:
            record = _find(object_type, str(item["id"]), item.get("idProperty"))
            if record is None:
                missing.append(str(item["id"]))
                continue
            record = store().update(object_type.name, record.id, values, api_actor())
            results.append(render_record(record, list(values)))
    errors = [standard_error("OBJECT_NOT_FOUND",
                             f"Could not get some {object_type.singular.upper()} objects, they may be deleted "
                             "or not exist. Check that ids are valid.", missing)] if missing else None
    return batch_envelope(results, errors, started)


@objects_api.post("/crm/v3/objects/<object_type>/batch/archive")
def batch_archive(object_type: str):
    object_type = object_type_or_404(object_type)
    for item in batch_inputs(json_body()):
        store().archive(object_type.name, str(item["id"]), api_actor())
    return "", 204


@objects_api.post("/crm/v3/objects/<object_type>/search")
def search(object_type: str):
    object_type = object_type_or_404(object_type)
    body = json_body()
    with store().lock:
        page, total, next_after = search_records(
            store().live_records(object_type.name), body, store().properties[object_type.name],
            object_type.search_text_properties)
        rendered = {"total": total, "results": [render_record(r, body.get("properties") or None) for r in page]}
    if next_after is not None:
        rendered["paging"] = {"next": {"after": str(next_after)}}
    return rendered


# -- associations v4 ------------------------------------------------------------------------------
def _association_types(found: set[int]) -> list[dict]:
    return [{"category": "HUBSPOT_DEFINED", "typeId": tid, "label": ASSOCIATION_TYPES[tid][2]}
            for tid in sorted(found)]


def _pair(from_type: str, to_type: str) -> tuple[ObjectType, ObjectType]:
    return object_type_or_404(from_type), object_type_or_404(to_type)


@objects_api.post("/crm/v4/associations/<from_type>/<to_type>/batch/read")
def associations_batch_read(from_type: str, to_type: str):
    source, target = _pair(from_type, to_type)
    started = to_iso(store().clock())
    results, errors = [], []
    with store().lock:
        for item in batch_inputs(json_body()):
            found = store().associated(source.name, str(item["id"]), target.name)
            if found:
                results.append({"from": {"id": str(item["id"])}, "to": [
                    {"toObjectId": to_id, "associationTypes": _association_types(tids)}
                    for to_id, tids in found.items()]})
            else:
                errors.append(standard_error(
                    "NO_ASSOCIATIONS_FOUND", f"No {target.singular} is associated with {source.singular} {item['id']}.",
                    [str(item["id"])]))
    return batch_envelope(results, errors, started)


def _labels_between(source: ObjectType, from_id: str, target: ObjectType, to_id: str) -> dict:
    found = store().associated(source.name, from_id, target.name).get(to_id, set())
    return {"fromObjectTypeId": source.type_id, "fromObjectId": from_id, "toObjectTypeId": target.type_id,
            "toObjectId": to_id, "labels": sorted({ASSOCIATION_TYPES[t][2] for t in found} - {None})}


@objects_api.post("/crm/v4/associations/<from_type>/<to_type>/batch/create")
def associations_batch_create(from_type: str, to_type: str):
    source, target = _pair(from_type, to_type)
    inputs = batch_inputs(json_body())
    with store().lock:
        for item in inputs:
            for spec in item.get("types") or []:
                store().associate(source.name, str(item["from"]["id"]), target.name, str(item["to"]["id"]),
                                  int(spec["associationTypeId"]), api_actor())
        results = [_labels_between(source, str(i["from"]["id"]), target, str(i["to"]["id"])) for i in inputs]
    body, _status = batch_envelope(results)
    return body, 201


@objects_api.post("/crm/v4/associations/<from_type>/<to_type>/batch/associate/default")
def associations_batch_default(from_type: str, to_type: str):
    source, target = _pair(from_type, to_type)
    results = []
    with store().lock:
        for item in batch_inputs(json_body()):
            results.append(_associate_default(source, str(item["from"]["id"]), target, str(item["to"]["id"])))
    body, _status = batch_envelope(results)
    return body, 200


def _associate_default(source: ObjectType, from_id: str, target: ObjectType, to_id: str) -> dict:
    type_id = default_association_type(source.name, target.name)
    if type_id is None:
        raise CrmError(400, "VALIDATION_ERROR", f"No default association from {source.name} to {target.name}")
    store().associate(source.name, from_id, target.name, to_id, type_id, api_actor())
    return {"from": {"id": from_id}, "to": {"id": to_id},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}}


@objects_api.post("/crm/v4/associations/<from_type>/<to_type>/batch/archive")
def associations_batch_archive(from_type: str, to_type: str):
    source, target = _pair(from_type, to_type)
    for item in batch_inputs(json_body()):
        for to in item.get("to") or []:
            store().disassociate(source.name, str(item["from"]["id"]), target.name, str(to["id"]), api_actor())
    return "", 204


@objects_api.put("/crm/v4/objects/<from_type>/<from_id>/associations/default/<to_type>/<to_id>")
def associate_default(from_type: str, from_id: str, to_type: str, to_id: str):
    source, target = _pair(from_type, to_type)
    with store().lock:
        result = _associate_default(source, from_id, target, to_id)
    body, _status = batch_envelope([result])
    return body, 200


@objects_api.put("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>/<to_id>")
def associate_labeled(from_type: str, from_id: str, to_type: str, to_id: str):
    source, target = _pair(from_type, to_type)
    specs = json_body()
    with store().lock:
        for spec in specs if isinstance(specs, list) else []:
            store().associate(source.name, from_id, target.name, to_id, int(spec["associationTypeId"]), api_actor())
        return _labels_between(source, from_id, target, to_id), 201


@objects_api.delete("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>/<to_id>")
def disassociate(from_type: str, from_id: str, to_type: str, to_id: str):
    source, target = _pair(from_type, to_type)
    store().disassociate(source.name, from_id, target.name, to_id, api_actor())
    return "", 204


@objects_api.get("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>")
def associations_page(from_type: str, from_id: str, to_type: str):
    source, target = _pair(from_type, to_type)
    limit = min(int(request.args.get("limit", 500)), 500)
    after = int(request.args.get("after") or 0)
    with store().lock:
        found = list(store().associated(source.name, from_id, target.name).items())
    page = found[after:after + limit]
    body = {"results": [{"toObjectId": to_id, "associationTypes": _association_types(tids)} for to_id, tids in page]}
    if after + limit < len(found):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return body
