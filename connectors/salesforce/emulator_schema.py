"""The sObjects the Salesforce emulator knows: fields, relationships, id prefixes.

Static data only, shaped after the Salesforce Object Reference so that code tested against
the emulator meets the same names, id prefixes and relationship names as in a real org.
Custom fields (`__c`) are not listed here: they exist only once the Metadata API created
them (see `emulator_metadata.py`), exactly as in an org where Baton is not yet installed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

__all__ = [
    "FieldDef",
    "ChildRelationship",
    "ObjectDef",
    "HistoryConfig",
    "OBJECTS",
    "KEY_PREFIXES",
    "object_for_id",
    "to_18",
    "IdFactory",
    "OPPORTUNITY_STAGES",
    "CLOSED_CASE_STATUSES",
    "CLOSED_TASK_STATUSES",
    "DEFINITION_OBJECTS",
    "EMAIL_RELATION_TYPES",
]

# Field types as `describe` reports them. Long text and blobs can be neither filtered nor
# sorted in SOQL, which is one of the first surprises of a real org.
STRING_TYPES = frozenset({"string", "picklist", "textarea", "email", "phone", "url", "combobox"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"double", "int", "currency", "percent"})


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str = "string"
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    custom: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    length: int = 255
    label: str = ""
    default: object = None

    @property
    def filterable(self) -> bool:
        return self.type not in {"base64", "anyType"} and not (self.type == "textarea" and self.length > 255)

    @property
    def polymorphic(self) -> bool:
        return len(self.reference_to) > 1

    def describe(self) -> dict:
        soap_type = {
            "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "date": "xsd:date",
            "datetime": "xsd:dateTime", "double": "xsd:double", "currency": "xsd:double",
            "percent": "xsd:double", "int": "xsd:int", "base64": "xsd:base64Binary", "anyType": "xsd:anyType",
        }.get(self.type, "xsd:string")
        return {
            "name": self.name,
            "label": self.label or _label(self.name),
            "type": self.type,
            "soapType": soap_type,
            "length": self.length if self.type in STRING_TYPES else 0,
            "custom": self.custom,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "filterable": self.filterable,
            "sortable": self.filterable,
            "groupable": self.filterable and self.type not in NUMBER_TYPES | {"datetime"},
            "defaultedOnCreate": self.default is not None or self.name in {"Id", "OwnerId", "CreatedDate"},
            "defaultValue": self.default if self.type in {"boolean", "picklist"} else None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "polymorphicForeignKey": self.polymorphic,
            "restrictedPicklist": self.restricted_picklist,
            "picklistValues": [
                {"active": True, "defaultValue": value == self.default, "label": value, "validFor": None, "value": value}
                for value in self.picklist_values
            ],
            "calculated": False,
            "unique": False,
            "externalId": False,
            "idLookup": self.name == "Id",
        }


@dataclass(frozen=True)
class ChildRelationship:
    name: str  # as written in a SOQL sub-query: "Tasks", "Histories"
    child: str  # "Task"
    field: str  # the child's field pointing at the parent: "WhatId"


@dataclass(frozen=True)
class HistoryConfig:
    """Field history tracking: which object holds the rows and which fields are tracked."""

    history_object: str  # "OpportunityFieldHistory"
    parent_field: str  # "OpportunityId"
    tracked: frozenset[str]  # field names; "OwnerId" is logged as Field='Owner'


@dataclass(frozen=True)
class ObjectDef:
    name: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    children: tuple[ChildRelationship, ...] = ()
    required_on_create: tuple[str, ...] = ()
    history: HistoryConfig | None = None
    createable: bool = True
    updateable: bool = True
    label: str = ""
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_lower.update({f.name.lower(): f for f in self.fields})

    def get_field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        lowered = name.lower()
        return next(
            (f for f in self.fields if f.relationship_name and f.relationship_name.lower() == lowered), None
        )

    def child(self, name: str) -> ChildRelationship | None:
        lowered = name.lower()
        return next((c for c in self.children if c.name.lower() == lowered), None)

    def with_field(self, new_field: FieldDef) -> "ObjectDef":
        kept = tuple(f for f in self.fields if f.name.lower() != new_field.name.lower())
        return replace(self, fields=kept + (new_field,), _by_lower={})

    def without_field(self, name: str) -> "ObjectDef":
        return replace(self, fields=tuple(f for f in self.fields if f.name.lower() != name.lower()), _by_lower={})


def _label(name: str) -> str:
    base = name.removesuffix("__c").removesuffix("Id") or name
    return base.replace("_", " ")


def _ro(name: str, type_: str = "string", **kwargs) -> FieldDef:
    return FieldDef(name, type_, createable=False, updateable=False, **kwargs)


def _ref(name: str, *targets: str, relationship: str, **kwargs) -> FieldDef:
    return FieldDef(name, "reference", reference_to=targets, relationship_name=relationship, **kwargs)


def _system_fields(with_modified: bool = True) -> tuple[FieldDef, ...]:
    fields = [
        _ro("Id", "id", nillable=False, length=18),
        _ro("IsDeleted", "boolean", nillable=False),
        _ro("CreatedDate", "datetime", nillable=False),
        FieldDef("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy",
                 createable=False, updateable=False, nillable=False),
    ]
    if with_modified:
        fields += [
            _ro("LastModifiedDate", "datetime", nillable=False),
            FieldDef("LastModifiedById", "reference", reference_to=("User",), relationship_name="LastModifiedBy",
                     createable=False, updateable=False, nillable=False),
            _ro("SystemModstamp", "datetime", nillable=False),
        ]
    return tuple(fields)


OPPORTUNITY_STAGES: dict[str, tuple[int, bool, bool]] = {
    # stage: (default probability, IsClosed, IsWon) — the stages of a default org.
    "Prospecting": (10, False, False),
    "Qualification": (10, False, False),
    "Needs Analysis": (20, False, False),
    "Value Proposition": (50, False, False),
    "Id. Decision Makers": (60, False, False),
    "Perception Analysis": (70, False, False),
    "Proposal/Price Quote": (75, False, False),
    "Negotiation/Review": (90, False, False),
    "Closed Won": (100, True, True),
    "Closed Lost": (0, True, False),
}
CLOSED_CASE_STATUSES = frozenset({"Closed"})
CLOSED_TASK_STATUSES = frozenset({"Completed"})
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
EMAIL_RELATION_TYPES = ("FromAddress", "ToAddress", "CcAddress", "BccAddress")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")

_OWNER_USER = _ref("OwnerId", "User", relationship="Owner", nillable=False)
_OWNER_USER_OR_QUEUE = _ref("OwnerId", "Group", "User", relationship="Owner", nillable=False)
_WHAT_TARGETS = ("Account", "Case", "Opportunity")


def _history_object(name: str, parent: str) -> ObjectDef:
    return ObjectDef(
        name=name,
        key_prefix="017",
        fields=_system_fields(with_modified=False) + (
            _ref(f"{parent}Id", parent, relationship=parent, createable=False, updateable=False, nillable=False),
            _ro("Field", "picklist"),
            _ro("DataType", "picklist"),
            _ro("OldValue", "anyType"),
            _ro("NewValue", "anyType"),
        ),
        createable=False,
        updateable=False,
    )


def _children(*relationships: ChildRelationship) -> tuple[ChildRelationship, ...]:
    """Every record that can hold notes also has the ContentDocumentLinks child relationship."""
    return relationships + (ChildRelationship("ContentDocumentLinks", "ContentDocumentLink", "LinkedEntityId"),)


_OBJECT_LIST: tuple[ObjectDef, ...] = (
    ObjectDef("Organization", "00D", _system_fields() + (
        _ro("Name"), _ro("IsSandbox", "boolean"), _ro("OrganizationType"), _ro("InstanceName"),
        _ro("TimeZoneSidKey", "picklist"),
    ), createable=False, updateable=False),
    ObjectDef("User", "005", _system_fields() + (
        FieldDef("Username", nillable=False), FieldDef("FirstName"), FieldDef("LastName", nillable=False),
        _ro("Name"), FieldDef("Email", "email", nillable=False), FieldDef("Alias", length=8),
        FieldDef("IsActive", "boolean", nillable=False, default=True),
        FieldDef("UserType", "picklist", picklist_values=("Standard", "PowerPartner", "CsnOnly", "AutomatedProcess")),
        FieldDef("Title"), FieldDef("TimeZoneSidKey", "picklist", default="America/New_York"),
        _ref("ManagerId", "User", relationship="Manager"),
    ), required_on_create=("Username", "LastName", "Email", "Alias")),
    ObjectDef("Group", "00G", _system_fields() + (
        FieldDef("Name", nillable=False), FieldDef("DeveloperName"),
        FieldDef("Type", "picklist", picklist_values=("Queue", "Regular"), nillable=False),
        FieldDef("Email", "email"), FieldDef("DoesSendEmailToMembers", "boolean", default=False),
    ), children=(ChildRelationship("GroupMembers", "GroupMember", "GroupId"),), required_on_create=("Name", "Type")),
    ObjectDef("GroupMember", "011", _system_fields(with_modified=False) + (
        _ref("GroupId", "Group", relationship="Group", nillable=False, updateable=False),
        _ref("UserOrGroupId", "User", "Group", relationship="UserOrGroup", nillable=False, updateable=False),
    ), required_on_create=("GroupId", "UserOrGroupId"), updateable=False),
    ObjectDef("Account", "001", _system_fields() + (
        FieldDef("Name", nillable=False), _OWNER_USER, FieldDef("Type", "picklist"), FieldDef("Industry", "picklist"),
        FieldDef("Phone", "phone"), FieldDef("Website", "url"), FieldDef("BillingCity"), FieldDef("BillingCountry"),
        FieldDef("AnnualRevenue", "currency"), FieldDef("NumberOfEmployees", "int"),
        FieldDef("Description", "textarea", length=32000),
    ), children=_children(
        ChildRelationship("Contacts", "Contact", "AccountId"),
        ChildRelationship("Opportunities", "Opportunity", "AccountId"),
        ChildRelationship("Cases", "Case", "AccountId"),
        ChildRelationship("Tasks", "Task", "WhatId"),
        ChildRelationship("Emails", "EmailMessage", "RelatedToId"),
        ChildRelationship("Histories", "AccountHistory", "AccountId"),
    ), required_on_create=("Name",),
        history=HistoryConfig("AccountHistory", "AccountId", frozenset({"OwnerId", "Name", "Type"}))),
    ObjectDef("Contact", "003", _system_fields() + (
        FieldDef("FirstName"), FieldDef("LastName", nillable=False), _ro("Name"), FieldDef("Email", "email"),
        FieldDef("Phone", "phone"), FieldDef("Title"), _ref("AccountId", "Account", relationship="Account"),
        _OWNER_USER, FieldDef("Description", "textarea", length=32000),
    ), children=_children(
        ChildRelationship("Tasks", "Task", "WhoId"),
        ChildRelationship("Cases", "Case", "ContactId"),
    ), required_on_create=("LastName",)),
    ObjectDef("Lead", "00Q", _system_fields() + (
        FieldDef("FirstName"), FieldDef("LastName", nillable=False), _ro("Name"),
        FieldDef("Company", nillable=False), FieldDef("Email", "email"), FieldDef("Phone", "phone"), FieldDef("Title"),
        FieldDef("Status", "picklist", picklist_values=LEAD_STATUSES, nillable=False, default=LEAD_STATUSES[0]),
        FieldDef("LeadSource", "picklist"), FieldDef("Rating", "picklist"),
        FieldDef("IsConverted", "boolean", updateable=False, nillable=False, default=False),
        _ro("ConvertedDate", "date"),
        _ref("ConvertedAccountId", "Account", relationship="ConvertedAccount", createable=False, updateable=False),
        _ref("ConvertedContactId", "Contact", relationship="ConvertedContact", createable=False, updateable=False),
        _ref("ConvertedOpportunityId", "Opportunity", relationship="ConvertedOpportunity",
             createable=False, updateable=False),
        _OWNER_USER_OR_QUEUE, FieldDef("IsUnreadByOwner", "boolean", default=True),
        FieldDef("Description", "textarea", length=32000),
    ), children=_children(
        ChildRelationship("Tasks", "Task", "WhoId"),
        ChildRelationship("Histories", "LeadHistory", "LeadId"),
    ), required_on_create=("LastName", "Company"),
        history=HistoryConfig("LeadHistory", "LeadId", frozenset({"OwnerId", "Status", "Rating"}))),
    ObjectDef("Opportunity", "006", _system_fields() + (
        FieldDef("Name", nillable=False), _ref("AccountId", "Account", relationship="Account"),
        FieldDef("StageName", "picklist", picklist_values=tuple(OPPORTUNITY_STAGES), nillable=False),
        FieldDef("CloseDate", "date", nillable=False), FieldDef("Amount", "currency"),
        FieldDef("Probability", "percent"), _ro("IsClosed", "boolean", nillable=False),
        _ro("IsWon", "boolean", nillable=False), FieldDef("Type", "picklist"), FieldDef("LeadSource", "picklist"),
        FieldDef("NextStep"), FieldDef("ForecastCategoryName", "picklist"), _ro("LastActivityDate", "date"),
        _OWNER_USER, FieldDef("Description", "textarea", length=32000),
    ), children=_children(
        ChildRelationship("Tasks", "Task", "WhatId"),
        ChildRelationship("Emails", "EmailMessage", "RelatedToId"),
        ChildRelationship("Histories", "OpportunityFieldHistory", "OpportunityId"),
    ), required_on_create=("Name", "StageName", "CloseDate"),
        history=HistoryConfig("OpportunityFieldHistory", "OpportunityId",
                              frozenset({"OwnerId", "StageName", "Amount", "CloseDate"}))),
    ObjectDef("Case", "500", _system_fields() + (
        _ro("CaseNumber"), FieldDef("Subject"), FieldDef("Description", "textarea", length=32000),
        FieldDef("Status", "picklist", picklist_values=CASE_STATUSES, default="New"),
        FieldDef("Priority", "picklist", picklist_values=("High", "Medium", "Low"), default="Medium"),
        FieldDef("Origin", "picklist", picklist_values=("Phone", "Email", "Web")),
        _ro("IsClosed", "boolean", nillable=False), _ro("ClosedDate", "datetime"),
        FieldDef("IsEscalated", "boolean", default=False),
        _ref("AccountId", "Account", relationship="Account"), _ref("ContactId", "Contact", relationship="Contact"),
        _OWNER_USER_OR_QUEUE,
    ), children=_children(
        ChildRelationship("Tasks", "Task", "WhatId"),
        ChildRelationship("EmailMessages", "EmailMessage", "ParentId"),
        ChildRelationship("Histories", "CaseHistory", "CaseId"),
    ), history=HistoryConfig("CaseHistory", "CaseId", frozenset({"OwnerId", "Status", "Priority"}))),
    ObjectDef("Task", "00T", _system_fields() + (
        FieldDef("Subject", "combobox"), FieldDef("ActivityDate", "date"),
        FieldDef("Status", "picklist", picklist_values=TASK_STATUSES, nillable=False, default="Not Started"),
        FieldDef("Priority", "picklist", picklist_values=("High", "Normal", "Low"), nillable=False, default="Normal"),
        _ro("IsHighPriority", "boolean"), _OWNER_USER,
        _ref("WhatId", *_WHAT_TARGETS, relationship="What"), _ref("WhoId", "Contact", "Lead", relationship="Who"),
        _ro("IsClosed", "boolean", nillable=False), FieldDef("Description", "textarea", length=32000),
        FieldDef("TaskSubtype", "picklist", picklist_values=("Task", "Email", "Call", "ListEmail", "Cadence"),
                 updateable=False, default="Task"),
        FieldDef("Type", "picklist", picklist_values=("Call", "Email", "Meeting", "Other")),
        FieldDef("CallType", "picklist", picklist_values=("Internal", "Inbound", "Outbound")),
        FieldDef("CallDurationInSeconds", "int"), _ro("CompletedDateTime", "datetime"),
        FieldDef("ReminderDateTime", "datetime"), FieldDef("IsReminderSet", "boolean", default=False),
    )),
    ObjectDef("EmailMessage", "02s", _system_fields() + (
        FieldDef("Subject"), FieldDef("TextBody", "textarea", length=131072),
        FieldDef("HtmlBody", "textarea", length=131072), FieldDef("Incoming", "boolean", default=False),
        FieldDef("MessageDate", "datetime"), FieldDef("FromAddress", "email"), FieldDef("FromName"),
        FieldDef("ToAddress", "textarea", length=4000), FieldDef("CcAddress", "textarea", length=4000),
        FieldDef("Status", "picklist", picklist_values=("0", "1", "2", "3", "4", "5"), default="3"),
        _ref("RelatedToId", *_WHAT_TARGETS, relationship="RelatedTo"),
        _ref("ParentId", "Case", relationship="Parent"), _ref("ActivityId", "Task", relationship="Activity"),
        FieldDef("MessageIdentifier"), FieldDef("ThreadIdentifier"), _ro("HasAttachment", "boolean"),
    )),
    # Enhanced Email: who an email was from/to among contacts, leads and users. Leads and
    # contacts are not "What"s, so this is how their emails are found (RelatedToId stays null).
    ObjectDef("EmailMessageRelation", "0AT", _system_fields() + (
        _ref("EmailMessageId", "EmailMessage", relationship="EmailMessage", nillable=False, updateable=False),
        _ref("RelationId", "Contact", "Lead", "User", relationship="Relation"),
        FieldDef("RelationType", "picklist", picklist_values=EMAIL_RELATION_TYPES, restricted_picklist=True,
                 nillable=False),
        FieldDef("RelationAddress", "email"),
        _ro("RelationObjectType"),
    ), required_on_create=("EmailMessageId", "RelationType")),
    ObjectDef("ContentNote", "069", _system_fields() + (
        FieldDef("Title", nillable=False), FieldDef("Content", "base64"), _ro("TextPreview", length=300),
        _ro("FileType"), _ro("FileExtension"), _ro("ContentSize", "int"),
        FieldDef("OwnerId", "reference", reference_to=("User",), relationship_name="Owner", nillable=False),
    ), children=(ChildRelationship("ContentDocumentLinks", "ContentDocumentLink", "ContentDocumentId"),),
        required_on_create=("Title",)),
    ObjectDef("ContentDocumentLink", "06A", (
        _ro("Id", "id", nillable=False, length=18), _ro("IsDeleted", "boolean", nillable=False),
        _ro("SystemModstamp", "datetime", nillable=False),
        # The document is a ContentNote here; real orgs point at ContentDocument, which shares its id.
        _ref("ContentDocumentId", "ContentNote", relationship="ContentDocument", nillable=False, updateable=False),
        _ref("LinkedEntityId", "Account", "Case", "Contact", "Lead", "Opportunity", "User",
             relationship="LinkedEntity", nillable=False, updateable=False),
        FieldDef("ShareType", "picklist", picklist_values=("V", "C", "I"), default="V"),
        FieldDef("Visibility", "picklist", picklist_values=("AllUsers", "InternalUsers", "SharedUsers"),
                 default="AllUsers"),
    ), required_on_create=("ContentDocumentId", "LinkedEntityId")),
    # Setup metadata as rows (read-only, rebuilt from the schema by `OrgState`). Their ids are
    # durable ids, not record ids: "Opportunity" and "Opportunity.OwnerId", as in a real org.
    ObjectDef("EntityDefinition", "", (
        _ro("Id", "id", nillable=False), _ro("DurableId"), _ro("QualifiedApiName"), _ro("DeveloperName"),
        _ro("Label"), _ro("KeyPrefix"),
    ), createable=False, updateable=False),
    ObjectDef("FieldDefinition", "", (
        _ro("Id", "id", nillable=False), _ro("DurableId"), _ro("QualifiedApiName"), _ro("DeveloperName"),
        _ro("Label"), _ro("DataType"),
        _ref("EntityDefinitionId", "EntityDefinition", relationship="EntityDefinition", createable=False,
             updateable=False, nillable=False),
        _ro("IsFieldHistoryTracked", "boolean", nillable=False), _ro("IsNillable", "boolean", nillable=False),
    ), createable=False, updateable=False),
    _history_object("OpportunityFieldHistory", "Opportunity"),
    _history_object("LeadHistory", "Lead"),
    _history_object("CaseHistory", "Case"),
    _history_object("AccountHistory", "Account"),
)

OBJECTS: dict[str, ObjectDef] = {obj.name: obj for obj in _OBJECT_LIST}
# History objects share 017, so a prefix alone does not name them; they are never looked up by id.
# Definition objects have no prefix: their ids are durable ids ("Opportunity.OwnerId").
KEY_PREFIXES: dict[str, str] = {obj.key_prefix: obj.name for obj in _OBJECT_LIST if obj.key_prefix not in {"017", ""}}
DEFINITION_OBJECTS = frozenset({"EntityDefinition", "FieldDefinition"})


def object_for_id(record_id: str) -> str | None:
    return KEY_PREFIXES.get(record_id[:3]) if record_id else None


_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def to_18(record_id: str) -> str:
    """The case-insensitive 18-character form of a 15-character id (the documented checksum)."""
    if len(record_id) != 15:
        return record_id
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(record_id[start:start + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_ALPHABET[bits]
    return record_id + suffix


class IdFactory:
    """Deterministic 18-character ids: key prefix, pod "5g", a base-62 serial, checksum."""

    def __init__(self, start: int = 1_000_000) -> None:
        self._counter = itertools.count(start)

    def new(self, key_prefix: str) -> str:
        serial = next(self._counter)
        digits = ""
        while serial:
            serial, remainder = divmod(serial, 62)
            digits = _BASE62[remainder] + digits
        return to_18(f"{key_prefix}5g00{digits.rjust(8, '0')}")
