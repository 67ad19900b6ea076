"""`install`: Baton's property group and properties, created or corrected from the manifest.

Per object type: read the groups and properties (2 GETs), create what is missing (1 batch
create per 100 properties), PATCH the properties whose label, description or options
drifted. A property with Baton's name but another type is reported, never changed: a
type change can destroy values. A second run finds everything in place and writes nothing.
"""
from __future__ import annotations

from typing import Any, Mapping

from hubspot.crm.properties import BatchInputPropertyCreate, OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate

from adapter.errors import FatalCrmError
from adapter.ports import InstallReport

from .batches import batch_errors, chunked
from .fields import MARKER_OBJECTS, HubSpotFields
from .transport import HubSpotApiError


class SchemaInstaller:
    def __init__(self, client):
        self._client = client

    def install(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> InstallReport:
        fields = HubSpotFields.from_manifest(manifest)
        report = InstallReport()
        errors: list[str] = []
        targets = [(name, [*fields.property_definitions(), fields.own_activity_definition()])
                   for name in fields.object_names.values()]
        targets += [(name, [fields.marker_definition()]) for name in MARKER_OBJECTS]
        for hubspot_type, wanted in targets:
            self._ensure_group(hubspot_type, fields, report, dry_run)
            self._ensure_properties(hubspot_type, wanted, report, errors, dry_run)
        if dry_run:
            report.notes.append("dry run: nothing was written")
        elif not report.changed:
            report.notes.append("HubSpot already matches the manifest; nothing changed")
        if errors:
            raise FatalCrmError("install did not complete:\n  " + "\n  ".join(errors))
        return report

    def _ensure_group(self, hubspot_type: str, fields: HubSpotFields, report: InstallReport, dry_run: bool) -> None:
        api = self._client.crm.properties.groups_api
        entry = f"{hubspot_type} group {fields.group_name}"
        groups = {g.name for g in api.get_all(hubspot_type).results or ()}
        if fields.group_name in groups:
            report.unchanged.append(entry)
            return
        report.created.append(entry)
        if not dry_run:
            api.create(hubspot_type, PropertyGroupCreate(name=fields.group_name, label=fields.group_label))

    def _ensure_properties(self, hubspot_type: str, wanted: list[dict], report: InstallReport,
                           errors: list[str], dry_run: bool) -> None:
        core = self._client.crm.properties.core_api
        existing = {p.name: p for p in core.get_all(hubspot_type).results or ()}
        missing, drifted = [], []
        for definition in wanted:
            entry = f"{hubspot_type}.{definition['name']}"
            current = existing.get(definition["name"])
            if current is None:
                missing.append(definition)
                report.created.append(entry)
            elif (current.type, current.field_type) != (definition["type"], definition["fieldType"]):
                report.notes.append(
                    f"{entry} exists as {current.type}/{current.field_type}, the manifest says "
                    f"{definition['type']}/{definition['fieldType']}: left alone; change it by hand")
            elif _differs(current, definition):
                drifted.append(definition)
                report.updated.append(entry)
            else:
                report.unchanged.append(entry)
        if dry_run:
            return
        for chunk in chunked(missing):
            response = self._client.crm.properties.batch_api.create(
                hubspot_type, BatchInputPropertyCreate(inputs=[_create_body(d) for d in chunk]))
            for error in batch_errors(response):
                if error.category != "OBJECT_ALREADY_EXISTS":  # created meanwhile: fine
                    errors.append(f"{hubspot_type}: {error.category}: {error.message}")
        for definition in drifted:
            try:
                core.update(hubspot_type, definition["name"], PropertyUpdate(
                    label=definition["label"], description=definition["description"],
                    options=_options(definition)))
            except HubSpotApiError as error:
                errors.append(f"{hubspot_type}.{definition['name']}: {error}")


def _option_pairs(options) -> list[tuple[str, str]]:
    """Options as (value, label) in display order, from models or dicts."""
    def get(option, key, attribute):
        return option.get(key) if isinstance(option, dict) else getattr(option, attribute)
    ordered = sorted(enumerate(options or ()), key=lambda p: (get(p[1], "displayOrder", "display_order") or 0, p[0]))
    return [(get(o, "value", "value"), get(o, "label", "label")) for _, o in ordered]


def _differs(current, definition: dict) -> bool:
    return (current.label != definition["label"]
            or (current.description or "") != definition["description"]
            or _option_pairs(current.options) != _option_pairs(definition.get("options")))


def _options(definition: dict) -> list[OptionInput] | None:
    options = definition.get("options")
    if not options:
        return None
    return [OptionInput(label=o["label"], value=o["value"], display_order=o["displayOrder"], hidden=o["hidden"])
            for o in options]


def _create_body(definition: dict) -> PropertyCreate:
    return PropertyCreate(
        name=definition["name"], label=definition["label"], type=definition["type"],
        field_type=definition["fieldType"], group_name=definition["groupName"],
        description=definition["description"], options=_options(definition),
        hidden=definition.get("hidden", False))
