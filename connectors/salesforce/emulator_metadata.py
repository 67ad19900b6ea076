"""Metadata API (SOAP, /services/Soap/m/{version}) for the Salesforce emulator.

Answers what `sf.mdapi` in simple-salesforce sends through zeep: createMetadata,
readMetadata, updateMetadata, upsertMetadata, deleteMetadata and listMetadata for
CustomField (task fields on `Activity`, as in a real org), PermissionSet and ValidationRule, plus `deploy`/`checkDeployStatus` of a zip
holding `objects/*.object`, source-format `*.field-meta.xml` or permission sets. Custom
fields take effect at once: they show up in describe, in SOQL and as writable fields.
Requests are parsed with defusedxml; components are kept as plain (tag, value) trees and
written back in the metadata namespace, so a read returns what was saved.
"""

from __future__ import annotations

import base64
import io
import threading
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Union
from xml.sax.saxutils import escape

from defusedxml import ElementTree
from flask import Blueprint, Response, request

from .emulator_schema import FieldDef
from .emulator_state import OrgState
from .emulator_wire import format_datetime

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator

__all__ = ["MetadataStore", "metadata_blueprint", "custom_field_def"]

MD = "http://soap.sforce.com/2006/04/metadata"
_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_ACTIVITY_OBJECTS = ("Task",)  # the emulator models no Event
_SUPPORTED_TYPES = ("CustomField", "PermissionSet", "ValidationRule")
_FIELD_TYPES = {
    "Text": "string", "TextArea": "textarea", "LongTextArea": "textarea", "Html": "textarea",
    "Picklist": "picklist", "MultiselectPicklist": "multipicklist", "Checkbox": "boolean", "Number": "double",
    "Percent": "percent", "Currency": "currency", "Date": "date", "DateTime": "datetime", "Email": "email",
    "Phone": "phone", "Url": "url", "Lookup": "reference",
}

Node = tuple[str, Union[str, list["Node"]]]  # (local tag, text or children)


class MetadataError(Exception):
    def __init__(self, status_code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class Component:
    type: str
    full_name: str
    body: list[Node]  # children of the <metadata> element, fullName included
    created: datetime
    modified: datetime
    id: str


def custom_field_def(full_name: str, body: list[Node]) -> FieldDef:
    """The describe-level field a CustomField component defines."""
    values = dict((tag, value) for tag, value in body if isinstance(value, str))
    field_name = full_name.split(".", 1)[1]
    kind = values.get("type")
    if kind not in _FIELD_TYPES:
        raise MetadataError("FIELD_INTEGRITY_EXCEPTION", f"Invalid field type: {kind}")
    if not values.get("label"):
        raise MetadataError("REQUIRED_FIELD_MISSING", "Required field is missing: label")
    picklist, restricted = [], False
    for tag, value in body:
        if tag == "valueSet" and isinstance(value, list):
            restricted = _text(value, "restricted") == "true"
            for definition in (v for t, v in value if t == "valueSetDefinition" and isinstance(v, list)):
                picklist += [_text(v, "fullName") for t, v in definition if t == "value" and isinstance(v, list)]
    is_checkbox = kind == "Checkbox"
    length = int(values.get("length") or (32768 if kind in {"LongTextArea", "Html"} else 255))
    return FieldDef(
        field_name, _FIELD_TYPES[kind], custom=True, label=values["label"], length=length,
        nillable=not is_checkbox,
        default=(values.get("defaultValue", "false").lower() == "true") if is_checkbox else None,
        picklist_values=tuple(p for p in picklist if p), restricted_picklist=restricted,
        reference_to=(values["referenceTo"],) if kind == "Lookup" else (),
        relationship_name=values.get("relationshipName") and values["relationshipName"] + "__r",
    )


class MetadataStore:
    """Components saved through the Metadata API, applied to the org's schema as they land."""

    def __init__(self, state: OrgState) -> None:
        self.state = state
        self.components: dict[tuple[str, str], Component] = {}
        self.deployments: dict[str, dict] = {}
        self._lock = threading.RLock()

    def save(self, type_name: str, body: list[Node], *, mode: str) -> tuple[str, bool]:
        """Create, update or upsert one component; returns (fullName, created)."""
        full_name = _text(body, "fullName") or ""
        if type_name not in _SUPPORTED_TYPES:
            raise MetadataError("INVALID_TYPE", f"The emulator does not support metadata type {type_name}")
        with self._lock:
            key = (type_name, full_name.lower())
            existing = self.components.get(key)
            if mode == "create" and existing:
                raise MetadataError("DUPLICATE_DEVELOPER_NAME",
                                    f"There is already a {type_name} named {full_name}.")
            if mode == "update" and not existing:
                raise MetadataError("INVALID_CROSS_REFERENCE_KEY",
                                    f"In field: fullName - no {type_name} named {full_name} found")
            if type_name == "CustomField":
                self._apply_field(full_name, body)
            elif type_name == "ValidationRule" and "." not in full_name:
                raise MetadataError("INVALID_CROSS_REFERENCE_KEY", f"Invalid fullName {full_name}: expected Object.Rule")
            now = self.state.clock()
            self.components[key] = Component(
                type_name, full_name, body, existing.created if existing else now, now,
                existing.id if existing else self.state.ids.new({"CustomField": "00N", "PermissionSet": "0PS"}
                                                               .get(type_name, "03d")),
            )
            return full_name, existing is None

    def read(self, type_name: str, full_name: str) -> Component | None:
        with self._lock:
            return self.components.get((type_name, full_name.lower()))

    def delete(self, type_name: str, full_name: str) -> None:
        with self._lock:
            component = self.components.pop((type_name, full_name.lower()), None)
            if component is None:
                raise MetadataError("INVALID_CROSS_REFERENCE_KEY",
                                    f"In field: fullName - no {type_name} named {full_name} found")
            if type_name == "CustomField":
                sobject, name = full_name.split(".", 1)
                for target in _ACTIVITY_OBJECTS if sobject == "Activity" else (sobject,):
                    self.state.remove_field(target, name)

    def listing(self, type_name: str) -> list[Component]:
        with self._lock:
            return [c for c in self.components.values() if c.type == type_name]

    def _apply_field(self, full_name: str, body: list[Node]) -> None:
        sobject, _, name = full_name.partition(".")
        if not name.endswith("__c"):
            raise MetadataError("INVALID_NAME" if name else "INVALID_CROSS_REFERENCE_KEY",
                                f"Custom field names must end with __c: {full_name}")
        # A real org defines task and event fields once, on Activity, and refuses "Task.X__c". The
        # emulator accepts both spellings so fixtures that seed Task fields directly keep working.
        targets = _ACTIVITY_OBJECTS if sobject == "Activity" else (sobject,)
        if not all(target in self.state.schema for target in targets):
            raise MetadataError("INVALID_CROSS_REFERENCE_KEY", f"Invalid parent object in {full_name}")
        definition = custom_field_def(full_name, body)
        for target in targets:
            self.state.add_field(target, definition)

    # ------------------------------------------------------------------ deploy
    def deploy(self, zipped: bytes) -> str:
        deployment_id = self.state.ids.new("0Af")
        deployed, failures = 0, []
        try:
            archive = zipfile.ZipFile(io.BytesIO(zipped))
            names = archive.namelist()
        except zipfile.BadZipFile:
            names, failures = [], [("package.xml", "Invalid zip file")]
        for name in names:
            try:
                deployed += self._deploy_file(name, archive.read(name))
            except (MetadataError, ElementTree.ParseError) as error:
                failures.append((name, getattr(error, "message", str(error))))
        self.deployments[deployment_id] = {"deployed": deployed, "failures": failures}
        return deployment_id

    def _deploy_file(self, name: str, data: bytes) -> int:
        parts = name.split("/")
        if name.endswith((".object", ".object-meta.xml")) and len(parts) >= 2:
            sobject = parts[-1].split(".")[0]
            root = _tree(ElementTree.fromstring(data))[1]
            count = 0
            for tag, value in root if isinstance(root, list) else []:
                if tag == "fields" and isinstance(value, list):
                    body = [("fullName", f"{sobject}.{_text(value, 'fullName')}")] + \
                           [n for n in value if n[0] != "fullName"]
                    self.save("CustomField", body, mode="upsert")
                    count += 1
            return count
        if name.endswith(".field-meta.xml") and len(parts) >= 3:
            sobject, field_name = parts[-3], parts[-1].removesuffix(".field-meta.xml")
            body = _tree(ElementTree.fromstring(data))[1]
            body = [("fullName", f"{sobject}.{field_name}")] + [n for n in body if n[0] != "fullName"]  # type: ignore
            self.save("CustomField", body, mode="upsert")
            return 1
        if name.endswith((".permissionset", ".permissionset-meta.xml")):
            body = _tree(ElementTree.fromstring(data))[1]
            full_name = parts[-1].split(".")[0]
            self.save("PermissionSet", [("fullName", full_name)] + [n for n in body if n[0] != "fullName"],  # type: ignore
                      mode="upsert")
            return 1
        return 0


def metadata_blueprint(emulator: "SalesforceEmulator") -> Blueprint:
    blueprint = Blueprint("salesforce_metadata", __name__)
    store = emulator.metadata

    @blueprint.post("/services/Soap/m/<version>")
    @blueprint.post("/services/Soap/m/<version>/<path:rest>")
    def metadata_call(version: str, rest: str = "") -> Response:
        try:
            envelope = ElementTree.fromstring(request.get_data())
        except ElementTree.ParseError as error:
            return _fault("soapenv:Client", "INVALID_XML", f"Could not parse the request: {error}")
        session_id = envelope.findtext(f".//{{{MD}}}SessionHeader/{{{MD}}}sessionId")
        if emulator.sessions.user_for(session_id) is None:
            return _fault("sf:INVALID_SESSION_ID", "INVALID_SESSION_ID",
                          "Invalid Session ID found in SessionHeader: Illegal Session")
        body = envelope.find(f"{{{_SOAP}}}Body")
        call = next(iter(body), None) if body is not None else None
        if call is None:
            return _fault("soapenv:Client", "INVALID_XML", "Empty SOAP body")
        operation = call.tag.split("}")[-1]
        handler = _OPERATIONS.get(operation)
        if handler is None:
            return _fault("soapenv:Client", "UNKNOWN_OPERATION",
                          f"The emulator does not implement the Metadata API call {operation}")
        return _envelope(f"<{operation}Response>{handler(store, call, version)}</{operation}Response>")

    return blueprint


def _save_results(mode: str):
    def handle(store: MetadataStore, call, version: str) -> str:
        results = []
        for element in call.findall(f"{{{MD}}}metadata"):
            type_name = (element.get(f"{{{_XSI}}}type") or "").split(":")[-1]
            body = _tree(element)[1]
            full_name = _text(body, "fullName") or ""  # type: ignore[arg-type]
            try:
                full_name, created = store.save(type_name, body, mode=mode)  # type: ignore[arg-type]
                created_tag = f"<created>{str(created).lower()}</created>" if mode == "upsert" else ""
                results.append(f"<result>{created_tag}<fullName>{escape(full_name)}</fullName>"
                               "<success>true</success></result>")
            except MetadataError as error:
                results.append(_failed_result(full_name, error, upsert=mode == "upsert"))
        return "".join(results)

    return handle


def _delete(store: MetadataStore, call, version: str) -> str:
    type_name = call.findtext(f"{{{MD}}}type") or ""
    results = []
    for full_name in (e.text or "" for e in call.findall(f"{{{MD}}}fullNames")):
        try:
            store.delete(type_name, full_name)
            results.append(f"<result><fullName>{escape(full_name)}</fullName><success>true</success></result>")
        except MetadataError as error:
            results.append(_failed_result(full_name, error))
    return "".join(results)


def _read(store: MetadataStore, call, version: str) -> str:
    type_name = call.findtext(f"{{{MD}}}type") or ""
    records = []
    for full_name in (e.text or "" for e in call.findall(f"{{{MD}}}fullNames")):
        component = store.read(type_name, full_name)
        # A name that does not exist comes back as an empty record, as in a real org.
        inner = _render(component.body) if component else ""
        records.append(f'<records xsi:type="{escape(type_name)}">{inner}</records>')
    return f"<result>{''.join(records)}</result>"


def _list(store: MetadataStore, call, version: str) -> str:
    results = []
    for query in call.findall(f"{{{MD}}}queries"):
        type_name = query.findtext(f"{{{MD}}}type") or ""
        for component in store.listing(type_name):
            results.append(
                f"<result><createdById>{store.state.integration_user_id}</createdById>"
                f"<createdByName>Integration User</createdByName>"
                f"<createdDate>{format_datetime(component.created)}</createdDate>"
                f"<fileName>{escape(_file_name(component))}</fileName><fullName>{escape(component.full_name)}</fullName>"
                f"<id>{component.id}</id><lastModifiedById>{store.state.integration_user_id}</lastModifiedById>"
                f"<lastModifiedByName>Integration User</lastModifiedByName>"
                f"<lastModifiedDate>{format_datetime(component.modified)}</lastModifiedDate>"
                f"<manageableState>unmanaged</manageableState><type>{escape(type_name)}</type></result>")
    return "".join(results)


def _deploy(store: MetadataStore, call, version: str) -> str:
    zipped = base64.b64decode(call.findtext(f"{{{MD}}}ZipFile") or "")
    deployment_id = store.deploy(zipped)
    return f"<result><done>false</done><id>{deployment_id}</id><state>Queued</state></result>"


def _check_deploy(store: MetadataStore, call, version: str) -> str:
    deployment_id = call.findtext(f"{{{MD}}}asyncProcessId") or ""
    outcome = store.deployments.get(deployment_id, {"deployed": 0, "failures": [("", "unknown deployment id")]})
    failures = outcome["failures"]
    status = "Failed" if failures else "Succeeded"
    details = "".join(
        f"<componentFailures><fileName>{escape(name)}</fileName><problem>{escape(problem)}</problem>"
        f"<problemType>Error</problemType><success>false</success></componentFailures>"
        for name, problem in failures)
    return (f"<result><details>{details}</details><done>true</done><id>{escape(deployment_id)}</id>"
            f"<numberComponentErrors>{len(failures)}</numberComponentErrors>"
            f"<numberComponentsDeployed>{outcome['deployed']}</numberComponentsDeployed>"
            f"<numberComponentsTotal>{outcome['deployed'] + len(failures)}</numberComponentsTotal>"
            f"<numberTestErrors>0</numberTestErrors><numberTestsCompleted>0</numberTestsCompleted>"
            f"<numberTestsTotal>0</numberTestsTotal><status>{status}</status>"
            f"<success>{str(not failures).lower()}</success></result>")


_OPERATIONS = {
    "createMetadata": _save_results("create"),
    "updateMetadata": _save_results("update"),
    "upsertMetadata": _save_results("upsert"),
    "deleteMetadata": _delete,
    "readMetadata": _read,
    "listMetadata": _list,
    "deploy": _deploy,
    "checkDeployStatus": _check_deploy,
}


def _tree(element) -> Node:
    tag = element.tag.split("}")[-1]
    children = list(element)
    return (tag, [_tree(child) for child in children]) if children else (tag, (element.text or "").strip())


def _text(nodes: list[Node], tag: str) -> str | None:
    return next((value for t, value in nodes if t == tag and isinstance(value, str)), None)


def _render(nodes: list[Node]) -> str:
    return "".join(f"<{tag}>{_render(value) if isinstance(value, list) else escape(value)}</{tag}>"
                   for tag, value in nodes)


def _file_name(component: Component) -> str:
    if component.type == "CustomField":
        return f"objects/{component.full_name.split('.')[0]}.object"
    return f"{component.type.lower()}s/{component.full_name}.{component.type.lower()}"


def _failed_result(full_name: str, error: MetadataError, *, upsert: bool = False) -> str:
    created = "<created>false</created>" if upsert else ""
    return (f"<result>{created}<errors><message>{escape(error.message)}</message>"
            f"<statusCode>{error.status_code}</statusCode></errors>"
            f"<fullName>{escape(full_name)}</fullName><success>false</success></result>")


def _envelope(inner: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAP}" '
            f'xmlns="{MD}" xmlns:xsi="{_XSI}"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>')
    return Response(body, 200, content_type="text/xml; charset=utf-8")


def _fault(code: str, exception_code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAP}" '
            f'xmlns:sf="{MD}"><soapenv:Body><soapenv:Fault><faultcode>{code}</faultcode>'
            f"<faultstring>{exception_code}: {escape(message)}</faultstring></soapenv:Fault>"
            "</soapenv:Body></soapenv:Envelope>")
    return Response(body, 500, content_type="text/xml; charset=utf-8")
