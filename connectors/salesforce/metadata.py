"""Install Baton into a Salesforce org: custom fields, permission sets and (on request)
validation rules through the Metadata API, or the same as a source package on disk.

`install(api, manifest)` reads what exists first (10 components per call), creates what is
missing and updates what differs, so a second run changes nothing and says so.
`write_package(manifest, directory)` writes the equivalent Salesforce DX source package
(plus Outbound Message definitions and record-triggered flows) for `sf project deploy`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from xml.sax.saxutils import escape

from adapter.errors import FatalCrmError
from adapter.ports import InstallReport
from connectors.salesforce.fields import CRM, SOURCE_FIELD, FieldMap, chunks

log = logging.getLogger(__name__)

MD_NS = "http://soap.sforce.com/2006/04/metadata"
MDAPI_BATCH = 10
BYPASS_PERMISSION = "Baton_Bypass_Rules"
INTEGRATION_PERMISSION_SET = "Baton_Integration"
#: Numbers that can be fractional; every other number is a whole Number(18,0).
FRACTIONAL = {"hours_waiting"}

DEFAULT_RULES = [
    {
        "name": "Baton_Owner_Must_Be_User",
        "description": "After creation, a record must be owned by a person, not a queue.",
        "message": "Assign this record to a person, not a queue (Baton).",
        "formulas": {
            sobject: f'AND(NOT($Permission.{BYPASS_PERMISSION}), NOT(ISNEW()), BEGINS(OwnerId, "00G"))'
            for sobject in ("Lead", "Case")
        },
    },
    {
        "name": "Baton_Next_Action_Required",
        "description": "An open record needs a dated next action (an open task with a due date).",
        "message": "Give this record a next step: an open task with a due date (Baton).",
        "formulas": {
            "Lead": f"AND(NOT($Permission.{BYPASS_PERMISSION}), NOT(ISNEW()), NOT(IsConverted), "
                    "ISBLANK(Baton_Next_Action_Due__c))",
            "Opportunity": f"AND(NOT($Permission.{BYPASS_PERMISSION}), NOT(ISNEW()), NOT(IsClosed), "
                           "ISBLANK(Baton_Next_Action_Due__c))",
            "Case": f"AND(NOT($Permission.{BYPASS_PERMISSION}), NOT(ISNEW()), NOT(IsClosed), "
                    "ISBLANK(Baton_Next_Action_Due__c))",
        },
    },
]
DEFAULT_OUTBOUND_FIELDS = ["Id", "OwnerId", "LastModifiedDate", "LastModifiedById", "SystemModstamp"]
TRIGGER_FIELDS = {"Lead": ["OwnerId", "Status"], "Opportunity": ["OwnerId", "StageName"],
                  "Account": ["OwnerId"], "Case": ["OwnerId", "Status"]}


# --- what Baton wants in the org -------------------------------------------------------------

@dataclass(frozen=True)
class FieldDefinition:
    """One custom field, as plain values comparable with what readMetadata returns."""

    full_name: str
    label: str
    type: str
    description: str = ""
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    default_value: str | None = None
    picklist: tuple[tuple[str, str], ...] = ()

    def comparable(self) -> dict[str, Any]:
        return {
            "label": self.label, "type": self.type, "description": self.description or None,
            "length": self.length, "precision": self.precision, "scale": self.scale,
            "defaultValue": self.default_value, "picklist": self.picklist,
        }


@dataclass(frozen=True)
class RuleDefinition:
    full_name: str
    formula: str
    message: str
    description: str


@dataclass
class Desired:
    fields: list[FieldDefinition] = field(default_factory=list)
    read_fields: list[str] = field(default_factory=list)
    rules: list[RuleDefinition] = field(default_factory=list)
    permission_set: tuple[str, str] = ("Baton_Fields_Read", "Baton fields (read)")


def desired_state(manifest: Mapping[str, Any], *, enforce: bool = False) -> Desired:
    fields = FieldMap(manifest)
    section = manifest["crms"][CRM]
    out = Desired()
    if section.get("permission_set"):
        out.permission_set = (section["permission_set"]["name"], section["permission_set"]["label"])
    for sobject in fields.object_names.values():
        for f in fields.fields:
            out.fields.append(_field_definition(f"{sobject}.{f.api_name}", f.spec.label, f.type,
                                                f.spec.description, f.spec.options, f.name))
    out.fields.append(FieldDefinition(f"Activity.{SOURCE_FIELD}", "Baton source", "Text",
                                      "Marker on tasks Baton created: which rule, which record.", length=255))
    out.read_fields = [d.full_name.replace("Activity.", "Task.", 1) for d in out.fields]
    if enforce:
        for rule in section.get("rules") or DEFAULT_RULES:
            for sobject, formula in rule["formulas"].items():
                out.rules.append(RuleDefinition(f"{sobject}.{rule['name']}", formula, rule["message"],
                                                rule.get("description", "")))
    return out


def _field_definition(full_name: str, label: str, kind: str, description: str,
                      options: Iterable[tuple[str, str]], name: str) -> FieldDefinition:
    common = {"full_name": full_name, "label": label[:40], "description": description[:1000]}
    if kind == "enumeration":
        return FieldDefinition(type="Picklist", picklist=tuple(options), **common)
    if kind == "string":
        return FieldDefinition(type="Text", length=255, **common)
    if kind == "datetime":
        return FieldDefinition(type="DateTime", **common)
    if kind == "number":
        return FieldDefinition(type="Number", precision=18, scale=2 if name in FRACTIONAL else 0, **common)
    if kind == "bool":
        return FieldDefinition(type="Checkbox", default_value="false", **common)
    raise ValueError(f"{full_name}: unknown field type {kind!r}")


# --- the Metadata API --------------------------------------------------------------------

def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _read_field(component: Any) -> dict[str, Any]:
    """readMetadata's CustomField → the shape of `FieldDefinition.comparable()`."""
    def number(name: str) -> int | None:
        value = getattr(component, name, None)
        return int(value) if value not in (None, "") else None

    picklist: tuple[tuple[str, str], ...] = ()
    value_set = getattr(component, "valueSet", None)
    definition = getattr(value_set, "valueSetDefinition", None) if value_set is not None else None
    if definition is not None:
        picklist = tuple((v.fullName, v.label) for v in _as_list(getattr(definition, "value", None)))
    default = getattr(component, "defaultValue", None)
    return {
        "label": component.label, "type": component.type, "description": getattr(component, "description", None) or None,
        "length": number("length"), "precision": number("precision"), "scale": number("scale"),
        "defaultValue": str(default).lower() if default is not None else None, "picklist": picklist,
    }


def _field_component(mdapi: Any, d: FieldDefinition) -> Any:
    kwargs: dict[str, Any] = {"fullName": d.full_name, "label": d.label, "type": d.type}
    if d.description:
        kwargs["description"] = d.description
        kwargs["inlineHelpText"] = d.description[:510]
    for key, value in (("length", d.length), ("precision", d.precision), ("scale", d.scale),
                       ("defaultValue", d.default_value)):
        if value is not None:
            kwargs[key] = value
    if d.picklist:
        kwargs["valueSet"] = mdapi.ValueSet(restricted=True, valueSetDefinition=mdapi.ValueSetValuesDefinition(
            sorted=False, value=[mdapi.CustomValue(fullName=v, label=label, default=False) for v, label in d.picklist]))
    return mdapi.CustomField(**kwargs)


class _LiveMetadata:
    """Always the client's current `SfdcMetadataApi` (a refreshed session replaces it)."""

    def __init__(self, api):
        self.api = api

    def __getattr__(self, name: str):
        return getattr(self.api.metadata(), name)


def _call(mdapi: _LiveMetadata, what: str, operation):
    """Metadata API failures (SOAP faults, failed SaveResults) → FatalCrmError naming them;
    an expired session is refreshed once."""
    for attempt in (1, 2):
        try:
            return operation()
        except FatalCrmError:
            raise
        except Exception as exc:  # zeep.Fault, or simple-salesforce's bare Exception for SaveResults
            if attempt == 1 and "INVALID_SESSION_ID" in str(getattr(exc, "code", "") or exc):
                mdapi.api.refresh()
                continue
            raise FatalCrmError(f"Metadata API {what} failed: {exc}", endpoint="metadata") from None


def install(api, manifest: Mapping[str, Any], *, dry_run: bool = False, enforce: bool = False) -> InstallReport:
    """Make the org match the manifest. `api` is a `SalesforceApi`; `dry_run` only reads."""
    want = desired_state(manifest, enforce=enforce)
    report = InstallReport()
    mdapi = _LiveMetadata(api)

    create, update = [], []
    for batch in chunks(want.fields, MDAPI_BATCH):
        found = _as_list(_call(mdapi, "read CustomField", lambda: mdapi.CustomField.read([d.full_name for d in batch])))
        by_name = {c.fullName: c for c in found if c is not None and getattr(c, "fullName", None)}
        for d in batch:
            current = by_name.get(d.full_name)
            if current is None:
                create.append(d)
            elif _read_field(current) != d.comparable():
                update.append(d)
            else:
                report.unchanged.append(d.full_name)
    report.created += [d.full_name for d in create]
    report.updated += [d.full_name for d in update]
    if not dry_run:
        for batch in chunks(create, MDAPI_BATCH):
            _call(mdapi, "create CustomField", lambda: mdapi.CustomField.create([_field_component(mdapi, d) for d in batch]))
        for batch in chunks(update, MDAPI_BATCH):
            _call(mdapi, "update CustomField", lambda: mdapi.CustomField.update([_field_component(mdapi, d) for d in batch]))

    _install_permission_set(mdapi, want.permission_set, want.read_fields, editable=False, report=report,
                            dry_run=dry_run)
    if enforce:
        _install_rules(mdapi, want, report, dry_run)
    _install_permission_set(mdapi, (INTEGRATION_PERMISSION_SET, "Baton integration user"), want.read_fields,
                            editable=True, report=report, dry_run=dry_run,
                            custom_permissions=[BYPASS_PERMISSION] if enforce else [])
    if not enforce:
        report.notes.append("validation rules not installed (pass enforce=True to require a person as owner "
                            "and a dated next action)")
    if not report.changed:
        report.notes.append("nothing to change: the org already matches the manifest")
    if dry_run:
        report.notes.append("dry run: nothing was written")
    return report


def _install_permission_set(mdapi, name_label: tuple[str, str], fields: list[str], *, editable: bool,
                            report: InstallReport, dry_run: bool, custom_permissions: list[str] = ()) -> None:
    name, label = name_label
    # Formula-free custom fields only: Checkbox/Text/... all accept FLS. Required fields cannot.
    wanted = {f: editable for f in fields}
    current = _call(mdapi, "read PermissionSet", lambda: mdapi.PermissionSet.read([name]))
    exists = current is not None and getattr(current, "fullName", None)
    have = {}
    have_custom = set()
    if exists:
        have = {p.field: bool(p.editable) for p in _as_list(getattr(current, "fieldPermissions", None))
                if p.readable}
        have_custom = {p.name for p in _as_list(getattr(current, "customPermissions", None)) if p.enabled}
    if exists and all(have.get(f) == e for f, e in wanted.items()) and set(custom_permissions) <= have_custom:
        report.unchanged.append(f"PermissionSet.{name}")
        return
    (report.updated if exists else report.created).append(f"PermissionSet.{name}")
    if dry_run:
        return
    component = mdapi.PermissionSet(
        fullName=name, label=label,
        description="Created by Baton: access to Baton's fields" + (" and rule bypass" if custom_permissions else ""),
        fieldPermissions=[mdapi.PermissionSetFieldPermissions(field=f, readable=True, editable=e)
                          for f, e in wanted.items()],
        customPermissions=[mdapi.PermissionSetCustomPermissions(name=p, enabled=True) for p in custom_permissions],
    )
    _call(mdapi, f"save PermissionSet {name}", lambda: (mdapi.PermissionSet.update if exists else mdapi.PermissionSet.create)([component]))


def _install_rules(mdapi, want: Desired, report: InstallReport, dry_run: bool) -> None:
    current = _call(mdapi, "read CustomPermission", lambda: mdapi.CustomPermission.read([BYPASS_PERMISSION]))
    if current is None or not getattr(current, "fullName", None):
        report.created.append(f"CustomPermission.{BYPASS_PERMISSION}")
        if not dry_run:
            _call(mdapi, "create CustomPermission", lambda: mdapi.CustomPermission.create([mdapi.CustomPermission(
                fullName=BYPASS_PERMISSION, label="Bypass Baton rules",
                description="Integrations and data loads may save records that break Baton's validation rules.")]))
    else:
        report.unchanged.append(f"CustomPermission.{BYPASS_PERMISSION}")
    for batch in chunks(want.rules, MDAPI_BATCH):
        found = _as_list(_call(mdapi, "read ValidationRule", lambda: mdapi.ValidationRule.read([r.full_name for r in batch])))
        by_name = {c.fullName: c for c in found if c is not None and getattr(c, "fullName", None)}
        create, update = [], []
        for rule in batch:
            current = by_name.get(rule.full_name)
            if current is None:
                create.append(rule)
            elif (bool(current.active), current.errorConditionFormula, current.errorMessage) != (
                    True, rule.formula, rule.message):
                update.append(rule)
            else:
                report.unchanged.append(f"ValidationRule.{rule.full_name}")
        report.created += [f"ValidationRule.{r.full_name}" for r in create]
        report.updated += [f"ValidationRule.{r.full_name}" for r in update]
        if dry_run:
            continue
        to_component = lambda r: mdapi.ValidationRule(fullName=r.full_name, active=True, description=r.description,
                                                      errorConditionFormula=r.formula, errorMessage=r.message)
        if create:
            _call(mdapi, "create ValidationRule", lambda: mdapi.ValidationRule.create([to_component(r) for r in create]))
        if update:
            _call(mdapi, "update ValidationRule", lambda: mdapi.ValidationRule.update([to_component(r) for r in update]))


# --- the source package --------------------------------------------------------------------

def _xml(root: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{MD_NS}">\n{body}</{root}>\n'


def _el(tag: str, value: Any, indent: int = 4) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{' ' * indent}<{tag}>{escape(str(value))}</{tag}>\n"


def _field_xml(d: FieldDefinition) -> str:
    body = _el("fullName", d.full_name.split(".", 1)[1])
    if d.default_value is not None:
        body += _el("defaultValue", d.default_value)
    if d.description:
        body += _el("description", d.description) + _el("inlineHelpText", d.description[:510])
    body += _el("externalId", False) + _el("label", d.label)
    for key, value in (("length", d.length), ("precision", d.precision), ("scale", d.scale)):
        if value is not None:
            body += _el(key, value)
    if d.type not in ("Checkbox",):
        body += _el("required", False)
    body += _el("trackHistory", False) + _el("type", d.type)
    if d.picklist:
        values = "".join(
            "            <value>\n" + _el("fullName", v, 16) + _el("default", False, 16) + _el("label", label, 16)
            + "            </value>\n" for v, label in d.picklist)
        body += ("    <valueSet>\n" + _el("restricted", True, 8) + "        <valueSetDefinition>\n"
                 + _el("sorted", False, 12) + values + "        </valueSetDefinition>\n    </valueSet>\n")
    return _xml("CustomField", body)


def write_package(manifest: Mapping[str, Any], directory: str | Path, *, public_url: str | None = None,
                  token: str | None = None, integration_user: str | None = None, enforce: bool = False,
                  api_version: str = "59.0") -> list[Path]:
    """Write the source package; returns the files written (sorted).

    With `public_url` and `token`, adds an Outbound Message per object (workflows/) targeting
    `{public_url}/webhooks/salesforce/outbound/{token}` and a record-triggered flow (flows/, saved
    as Draft) that sends it when the owner or stage changes or a record is created.
    """
    root = Path(directory)
    want = desired_state(manifest, enforce=enforce)
    fields = FieldMap(manifest)
    written: list[Path] = []
    members: dict[str, list[str]] = {}

    def put(relative: str, text: str, kind: str, member: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
        members.setdefault(kind, []).append(member)

    for d in want.fields:
        sobject, api_name = d.full_name.split(".", 1)
        put(f"objects/{sobject}/fields/{api_name}.field-meta.xml", _field_xml(d), "CustomField", d.full_name)
    put(f"permissionsets/{want.permission_set[0]}.permissionset-meta.xml",
        _permission_set_xml(want.permission_set[1], want.read_fields, editable=False),
        "PermissionSet", want.permission_set[0])
    put(f"permissionsets/{INTEGRATION_PERMISSION_SET}.permissionset-meta.xml",
        _permission_set_xml("Baton integration user", want.read_fields, editable=True,
                            custom_permissions=[BYPASS_PERMISSION] if enforce else []),
        "PermissionSet", INTEGRATION_PERMISSION_SET)
    if enforce:
        put(f"customPermissions/{BYPASS_PERMISSION}.customPermission-meta.xml", _xml(
            "CustomPermission", _el("description", "Integrations may save records that break Baton's rules.")
            + _el("isLicensed", False) + _el("label", "Bypass Baton rules")), "CustomPermission", BYPASS_PERMISSION)
        for rule in want.rules:
            sobject, name = rule.full_name.split(".", 1)
            put(f"objects/{sobject}/validationRules/{name}.validationRule-meta.xml", _xml(
                "ValidationRule", _el("fullName", name) + _el("active", True) + _el("description", rule.description)
                + _el("errorConditionFormula", rule.formula) + _el("errorMessage", rule.message)),
                "ValidationRule", rule.full_name)
    if public_url and token:
        endpoint = f"{public_url.rstrip('/')}/webhooks/salesforce/outbound/{token}"
        configured = {m["object"]: m for m in manifest["crms"][CRM].get("outbound_messages") or ()}
        for sobject in fields.object_names.values():
            spec = configured.get(sobject, {})
            name = spec.get("name", f"Baton_{sobject}_Changed")
            put(f"workflows/{sobject}.workflow-meta.xml", _workflow_xml(
                name, endpoint, spec.get("fields", DEFAULT_OUTBOUND_FIELDS), integration_user, api_version),
                "Workflow", sobject)
            put(f"flows/{name}.flow-meta.xml", _flow_xml(
                sobject, name, spec.get("trigger_fields", TRIGGER_FIELDS.get(sobject, ["OwnerId"])), api_version),
                "Flow", name)
    types = "".join(
        "    <types>\n" + "".join(_el("members", m, 8) for m in sorted(ms)) + _el("name", kind, 8) + "    </types>\n"
        for kind, ms in sorted(members.items()))
    package = root / "package.xml"
    package.write_text(_xml("Package", types + _el("version", api_version)), encoding="utf-8")
    written.append(package)
    return sorted(written)


def _permission_set_xml(label: str, fields: list[str], *, editable: bool, custom_permissions: Iterable[str] = ()) -> str:
    body = "".join("    <customPermissions>\n" + _el("enabled", True, 8) + _el("name", p, 8)
                   + "    </customPermissions>\n" for p in custom_permissions)
    body += _el("description", "Created by Baton: access to Baton's fields")
    body += "".join("    <fieldPermissions>\n" + _el("editable", editable, 8) + _el("field", f, 8)
                    + _el("readable", True, 8) + "    </fieldPermissions>\n" for f in fields)
    return _xml("PermissionSet", body + _el("hasActivationRequired", False) + _el("label", label))


def _workflow_xml(name: str, endpoint: str, fields: list[str], integration_user: str | None, api_version: str) -> str:
    body = ("    <outboundMessages>\n" + _el("fullName", name, 8) + _el("apiVersion", api_version, 8)
            + _el("description", "Tells Baton to look at the record again.", 8) + _el("endpointUrl", endpoint, 8)
            + "".join(_el("fields", f, 8) for f in fields) + _el("includeSessionId", False, 8)
            + _el("integrationUser", integration_user or "REPLACE-WITH-INTEGRATION-USERNAME", 8)
            + _el("name", name.replace("_", " "), 8) + _el("protected", False, 8)
            + _el("useDeadLetterQueue", False, 8) + "    </outboundMessages>\n")
    return _xml("Workflow", body)


def _flow_xml(sobject: str, message: str, trigger_fields: list[str], api_version: str) -> str:
    formula = " || ".join(["ISNEW()"] + [f"ISCHANGED({{!$Record.{f}}})" for f in trigger_fields])
    body = (
        _el("apiVersion", api_version)
        + "    <actionCalls>\n" + _el("name", "Notify_Baton", 8) + _el("label", "Notify Baton", 8)
        + _el("locationX", 176, 8) + _el("locationY", 323, 8) + _el("actionName", f"{sobject}.{message}", 8)
        + _el("actionType", "outboundMessage", 8) + _el("flowTransactionModel", "CurrentTransaction", 8)
        + "        <inputParameters>\n" + _el("name", "ContextId", 12)
        + "            <value>\n" + _el("elementReference", "$Record.Id", 16) + "            </value>\n"
        + "        </inputParameters>\n    </actionCalls>\n"
        + _el("description", "Sends Baton's Outbound Message when a record is created or its owner/stage changes.")
        + _el("label", f"Baton: {sobject} changed") + _el("processType", "AutoLaunchedFlow")
        + "    <start>\n" + _el("locationX", 50, 8) + _el("locationY", 0, 8)
        + "        <connector>\n" + _el("targetReference", "Notify_Baton", 12) + "        </connector>\n"
        + _el("filterFormula", formula, 8) + _el("object", sobject, 8)
        + _el("recordTriggerType", "CreateAndUpdate", 8) + _el("triggerType", "RecordAfterSave", 8)
        + "    </start>\n" + _el("status", "Draft")
    )
    return _xml("Flow", body)
