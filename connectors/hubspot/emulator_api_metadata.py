"""Owners v3, pipelines v3 and properties v3: the portal's settings, as HubSpot serves them."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, request

from .emulator_api_objects import (
    batch_envelope, batch_inputs, json_body, object_type_or_404, query_flag, standard_error, store,
)
from .emulator_catalog import PropertyDefinition
from .emulator_state import CrmError, to_iso

__all__ = ["metadata_api"]

metadata_api = Blueprint("hubspot_metadata", __name__)


# -- owners ----------------------------------------------------------------------------------
@metadata_api.get("/crm/v3/owners")
@metadata_api.get("/crm/v3/owners/")
def list_owners():
    archived = query_flag("archived")  # true lists only deactivated users' owners, as HubSpot does
    owners = [o for o in store().owners if o["archived"] == archived]
    if request.args.get("email"):
        owners = [o for o in owners if o["email"].lower() == request.args["email"].lower()]
    limit = min(int(request.args.get("limit", 100)), 500)
    after = int(request.args.get("after") or 0)
    body = {"results": owners[after:after + limit]}
    if after + limit < len(owners):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return body


@metadata_api.get("/crm/v3/owners/<owner_id>")
def get_owner(owner_id: str):
    by_user_id = request.args.get("idProperty") == "userId"
    archived = query_flag("archived")
    for owner in store().owners:
        if (str(owner["userId"]) if by_user_id else owner["id"]) == owner_id and owner["archived"] == archived:
            return owner
    raise CrmError(404, "OBJECT_NOT_FOUND", f"Owner {owner_id} not found")


# -- pipelines -----------------------------------------------------------------------------------
def _pipelines(object_type: str) -> list[dict]:
    name = object_type_or_404(object_type).name
    if name not in store().pipelines:
        raise CrmError(400, "VALIDATION_ERROR", f"Object type {object_type} does not support pipelines")
    return store().pipelines[name]


@metadata_api.get("/crm/v3/pipelines/<object_type>")
def list_pipelines(object_type: str):
    return {"results": _pipelines(object_type)}


@metadata_api.get("/crm/v3/pipelines/<object_type>/<pipeline_id>")
def get_pipeline(object_type: str, pipeline_id: str):
    for pipeline in _pipelines(object_type):
        if pipeline["id"] == pipeline_id:
            return pipeline
    raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find pipeline {pipeline_id}")


@metadata_api.get("/crm/v3/pipelines/<object_type>/<pipeline_id>/stages")
def list_stages(object_type: str, pipeline_id: str):
    return {"results": get_pipeline(object_type, pipeline_id)["stages"]}


# -- properties ------------------------------------------------------------------------------------
def render_property(definition: PropertyDefinition, object_type: str, display_order: int) -> dict:
    rendered = {
        "name": definition.name, "label": definition.label, "type": definition.type,
        "fieldType": definition.field_type, "description": definition.description,
        "groupName": definition.group_name, "options": [dict(o) for o in definition.options],
        "displayOrder": display_order, "calculated": False, "externalOptions": False,
        "hasUniqueValue": bool(definition.extra.get("hasUniqueValue", False)),
        "hidden": bool(definition.extra.get("hidden", False)), "formField": bool(definition.extra.get("formField", False)),
        "hubspotDefined": definition.hubspot_defined,
        "modificationMetadata": {"archivable": not definition.hubspot_defined,
                                 "readOnlyDefinition": definition.hubspot_defined,
                                 "readOnlyValue": definition.read_only},
        "archived": False,
    }
    if not definition.hubspot_defined:
        rendered["createdAt"] = rendered["updatedAt"] = definition.extra.get("createdAt")
    return rendered


def _definitions(object_type: str) -> tuple[str, dict[str, PropertyDefinition]]:
    name = object_type_or_404(object_type).name
    return name, store().properties[name]


def _create_property(object_type: str, body: dict) -> PropertyDefinition:
    definitions = store().properties[object_type]
    name = body["name"]
    if name in definitions:
        raise CrmError(409, "OBJECT_ALREADY_EXISTS", f"A property named '{name}' already exists.",
                       {"name": [name]})
    if body["groupName"] not in store().property_groups[object_type]:
        raise CrmError(400, "VALIDATION_ERROR", f"Property group '{body['groupName']}' does not exist.")
    if body["type"] == "enumeration" and not body.get("options") and body["fieldType"] != "booleancheckbox":
        raise CrmError(400, "VALIDATION_ERROR", f"Enumeration property '{name}' needs options.")
    known = {"name", "label", "type", "fieldType", "groupName", "description", "options", "displayOrder"}
    definition = PropertyDefinition(
        name=name, type=body["type"], field_type=body["fieldType"], label=body["label"],
        group_name=body["groupName"], description=body.get("description", ""),
        options=tuple({"hidden": False, **o} for o in body.get("options") or []), hubspot_defined=False,
        extra={"createdAt": to_iso(store().clock()), **{k: v for k, v in body.items() if k not in known}},
    )
    definitions[name] = definition
    return definition


@metadata_api.get("/crm/v3/properties/<object_type>")
def list_properties(object_type: str):
    name, definitions = _definitions(object_type)
    if query_flag("archived"):
        return {"results": []}  # the emulator never archives properties
    return {"results": [render_property(d, name, i) for i, d in enumerate(definitions.values())]}


@metadata_api.post("/crm/v3/properties/<object_type>")
def create_property(object_type: str):
    name, _definitions_ = _definitions(object_type)
    with store().lock:
        definition = _create_property(name, json_body())
        return render_property(definition, name, len(store().properties[name]) - 1), 201


@metadata_api.post("/crm/v3/properties/<object_type>/batch/create")
def batch_create_properties(object_type: str):
    name, _definitions_ = _definitions(object_type)
    results, errors = [], []
    with store().lock:
        for item in batch_inputs(json_body()):
            try:
                definition = _create_property(name, item)
            except CrmError as error:
                errors.append(standard_error(error.category, error.message, [item["name"]]))
                continue
            results.append(render_property(definition, name, len(store().properties[name]) - 1))
    body, status = batch_envelope(results, errors)
    return body, 207 if errors else 201


@metadata_api.post("/crm/v3/properties/<object_type>/batch/read")
def batch_read_properties(object_type: str):
    name, definitions = _definitions(object_type)
    wanted = [item["name"] for item in batch_inputs(json_body())]
    order = {n: i for i, n in enumerate(definitions)}
    results = [render_property(definitions[n], name, order[n]) for n in wanted if n in definitions]
    missing = [n for n in wanted if n not in definitions]
    errors = [standard_error("OBJECT_NOT_FOUND", "Some properties were not found", missing)] if missing else None
    return batch_envelope(results, errors)


@metadata_api.get("/crm/v3/properties/<object_type>/<property_name>")
def get_property(object_type: str, property_name: str):
    name, definitions = _definitions(object_type)
    if property_name not in definitions:
        raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find property {property_name} on {name}")
    return render_property(definitions[property_name], name, list(definitions).index(property_name))


@metadata_api.patch("/crm/v3/properties/<object_type>/<property_name>")
def update_property(object_type: str, property_name: str):
    name, definitions = _definitions(object_type)
    body = json_body()
    with store().lock:
        current = definitions.get(property_name)
        if current is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find property {property_name} on {name}")
        if current.hubspot_defined and set(body) - {"label", "description", "displayOrder", "hidden"}:
            raise CrmError(400, "VALIDATION_ERROR", f"HubSpot-defined property {property_name} cannot be changed")
        changes = {}
        for key, attribute in (("label", "label"), ("description", "description"), ("groupName", "group_name"),
                               ("type", "type"), ("fieldType", "field_type")):
            if key in body:
                changes[attribute] = body[key]
        if "options" in body:
            changes["options"] = tuple({"hidden": False, **o} for o in body["options"])
        definitions[property_name] = replace(current, **changes)
        return render_property(definitions[property_name], name, list(definitions).index(property_name))


@metadata_api.get("/crm/v3/properties/<object_type>/groups")
def list_property_groups(object_type: str):
    name = object_type_or_404(object_type).name
    return {"results": list(store().property_groups[name].values())}


@metadata_api.post("/crm/v3/properties/<object_type>/groups")
def create_property_group(object_type: str):
    name = object_type_or_404(object_type).name
    body = json_body()
    with store().lock:
        groups = store().property_groups[name]
        if body["name"] in groups:
            raise CrmError(409, "OBJECT_ALREADY_EXISTS", f"A property group named '{body['name']}' already exists.",
                           {"name": [body["name"]]})
        groups[body["name"]] = {"name": body["name"], "label": body["label"],
                                "displayOrder": body.get("displayOrder", -1), "archived": False}
        return groups[body["name"]], 201


@metadata_api.get("/crm/v3/properties/<object_type>/groups/<group_name>")
def get_property_group(object_type: str, group_name: str):
    name = object_type_or_404(object_type).name
    group = store().property_groups[name].get(group_name)
    if group is None:
        raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {group_name}")
    return group
