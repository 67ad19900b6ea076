"""What a fresh HubSpot portal already contains, as the emulator models it.

Static data only: the CRM object types the emulator serves, their built-in properties,
HubSpot-defined association types, the default pipelines and the portal's users. Values
follow HubSpot's public documentation so that code tested against the emulator meets the
same identifiers in a real portal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ObjectType",
    "OBJECT_TYPES",
    "ENGAGEMENT_TYPES",
    "ACTIVITY_DATE_PROPERTY",
    "resolve_object_type",
    "PropertyDefinition",
    "builtin_properties",
    "ASSOCIATION_TYPES",
    "default_association_type",
    "DEAL_PIPELINES",
    "TICKET_PIPELINES",
    "PORTAL_USERS",
]


@dataclass(frozen=True)
class ObjectType:
    name: str  # plural name used in URLs: "deals"
    type_id: str  # HubSpot object type id: "0-3"
    singular: str  # "deal"; also the prefix of classic webhook subscriptions
    created_property: str  # property holding the creation time
    modified_property: str  # property HubSpot bumps on every write
    default_properties: tuple[str, ...]  # returned when a read names no properties
    # Notes, tasks, emails and calls only reach webhooks as generic `object.*` events.
    generic_webhooks: bool = False
    search_text_properties: tuple[str, ...] = ()  # searched by the `query` parameter

    @property
    def webhook_prefix(self) -> str:
        return "object" if self.generic_webhooks else self.singular


_ENGAGEMENT_DEFAULTS = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")

OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType("contacts", "0-1", "contact", "createdate", "lastmodifieddate",
                   ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
                   search_text_properties=("firstname", "lastname", "email")),
        ObjectType("companies", "0-2", "company", "createdate", "hs_lastmodifieddate",
                   ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
                   search_text_properties=("name", "domain")),
        ObjectType("deals", "0-3", "deal", "createdate", "hs_lastmodifieddate",
                   ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
                    "hs_object_id", "pipeline"),
                   search_text_properties=("dealname",)),
        ObjectType("tickets", "0-5", "ticket", "createdate", "hs_lastmodifieddate",
                   ("content", "createdate", "hs_lastmodifieddate", "hs_object_id", "hs_pipeline",
                    "hs_pipeline_stage", "hs_ticket_category", "hs_ticket_priority", "subject"),
                   search_text_properties=("subject", "content")),
        ObjectType("tasks", "0-27", "task", "hs_createdate", "hs_lastmodifieddate", _ENGAGEMENT_DEFAULTS,
                   generic_webhooks=True, search_text_properties=("hs_task_subject",)),
        ObjectType("notes", "0-46", "note", "hs_createdate", "hs_lastmodifieddate", _ENGAGEMENT_DEFAULTS,
                   generic_webhooks=True),
        ObjectType("calls", "0-48", "call", "hs_createdate", "hs_lastmodifieddate", _ENGAGEMENT_DEFAULTS,
                   generic_webhooks=True),
        ObjectType("emails", "0-49", "email", "hs_createdate", "hs_lastmodifieddate", _ENGAGEMENT_DEFAULTS,
                   generic_webhooks=True),
    )
}

#: Engagements: logging one on a record moves the record's "Last activity date".
ENGAGEMENT_TYPES = frozenset({"tasks", "notes", "calls", "emails"})
ACTIVITY_DATE_PROPERTY = "notes_last_updated"

_ALIASES = {alias: t for t in OBJECT_TYPES.values() for alias in (t.name, t.type_id, t.singular)}


def resolve_object_type(name_or_id: str) -> ObjectType | None:
    """Map "deals", "deal" or "0-3" to the object type; None when HubSpot would 404."""
    return _ALIASES.get(name_or_id.lower())


@dataclass(frozen=True)
class PropertyDefinition:
    name: str
    type: str  # string, number, date, datetime, enumeration, bool, phone_number
    field_type: str  # text, textarea, number, date, select, booleancheckbox, html, ...
    label: str
    group_name: str
    options: tuple[dict, ...] = ()
    description: str = ""
    hubspot_defined: bool = True
    read_only: bool = False  # calculated by HubSpot; writes are rejected
    extra: dict = field(default_factory=dict, compare=False)  # anything else a client sent


def _options(*values: str) -> tuple[dict, ...]:
    return tuple(
        {"label": v.replace("_", " ").title(), "value": v, "displayOrder": i, "hidden": False}
        for i, v in enumerate(values)
    )


# name: (type, fieldType, options) — labels are derived from the name.
_COMMON = {
    "hs_object_id": ("number", "number", ()),
    "hubspot_owner_id": ("enumeration", "select", ()),
    "hs_createdate": ("datetime", "date", ()),
    "hs_lastmodifieddate": ("datetime", "date", ()),
    "hs_timestamp": ("datetime", "date", ()),
}
_BY_TYPE: dict[str, dict[str, tuple]] = {
    "contacts": {
        "createdate": ("datetime", "date", ()), "lastmodifieddate": ("datetime", "date", ()),
        "firstname": ("string", "text", ()), "lastname": ("string", "text", ()),
        "email": ("string", "text", ()), "phone": ("string", "phonenumber", ()),
        "company": ("string", "text", ()), "jobtitle": ("string", "text", ()),
        "lifecyclestage": ("enumeration", "radio", _options(
            "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
            "customer", "evangelist", "other")),
        "hs_lead_status": ("enumeration", "radio", _options("NEW", "OPEN", "IN_PROGRESS", "CONNECTED")),
        "notes_last_contacted": ("datetime", "date", ()), "notes_last_updated": ("datetime", "date", ()),
    },
    "companies": {
        "createdate": ("datetime", "date", ()), "name": ("string", "text", ()),
        "domain": ("string", "text", ()), "industry": ("string", "text", ()),
        "city": ("string", "text", ()), "numberofemployees": ("number", "number", ()),
        "notes_last_contacted": ("datetime", "date", ()), "notes_last_updated": ("datetime", "date", ()),
        "lifecyclestage": ("enumeration", "radio", _options("lead", "opportunity", "customer", "other")),
    },
    "deals": {
        "createdate": ("datetime", "date", ()), "dealname": ("string", "text", ()),
        "dealstage": ("enumeration", "radio", ()), "pipeline": ("enumeration", "select", ()),
        "amount": ("number", "number", ()), "closedate": ("datetime", "date", ()),
        "dealtype": ("enumeration", "radio", _options("newbusiness", "existingbusiness")),
        "description": ("string", "textarea", ()), "hs_is_closed": ("bool", "booleancheckbox", ()),
        "notes_last_contacted": ("datetime", "date", ()), "notes_last_updated": ("datetime", "date", ()),
        "hs_next_step": ("string", "textarea", ()),
    },
    "tickets": {
        "createdate": ("datetime", "date", ()), "subject": ("string", "text", ()),
        "content": ("string", "textarea", ()), "hs_pipeline": ("enumeration", "select", ()),
        "hs_pipeline_stage": ("enumeration", "radio", ()),
        "hs_ticket_priority": ("enumeration", "select", _options("LOW", "MEDIUM", "HIGH", "URGENT")),
        "hs_ticket_category": ("enumeration", "checkbox", _options(
            "PRODUCT_ISSUE", "BILLING_ISSUE", "FEATURE_REQUEST", "GENERAL_INQUIRY")),
        "closed_date": ("datetime", "date", ()),
        "notes_last_contacted": ("datetime", "date", ()), "notes_last_updated": ("datetime", "date", ()),
    },
    "tasks": {
        "hs_task_subject": ("string", "text", ()), "hs_task_body": ("string", "html", ()),
        "hs_task_status": ("enumeration", "select", _options("NOT_STARTED", "IN_PROGRESS", "WAITING",
                                                             "COMPLETED", "DEFERRED")),
        "hs_task_priority": ("enumeration", "select", _options("NONE", "LOW", "MEDIUM", "HIGH")),
        "hs_task_type": ("enumeration", "select", _options("TODO", "CALL", "EMAIL", "LINKED_IN")),
        "hs_task_completion_date": ("datetime", "date", ()),
        "hs_queue_membership_ids": ("enumeration", "checkbox", ()),
    },
    "notes": {"hs_note_body": ("string", "html", ()), "hs_attachment_ids": ("enumeration", "checkbox", ())},
    "emails": {
        "hs_email_text": ("string", "textarea", ()), "hs_email_html": ("string", "html", ()),
        "hs_email_subject": ("string", "text", ()),
        "hs_email_direction": ("enumeration", "select", _options("EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL")),
        "hs_email_status": ("enumeration", "select", _options("BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT")),
        "hs_email_headers": ("string", "textarea", ()),
    },
    "calls": {
        "hs_call_body": ("string", "html", ()), "hs_call_title": ("string", "text", ()),
        "hs_call_direction": ("enumeration", "select", _options("INBOUND", "OUTBOUND")),
        "hs_call_duration": ("number", "number", ()),
        "hs_call_status": ("enumeration", "select", _options(
            "BUSY", "CALLING_CRM_USER", "CANCELED", "COMPLETED", "CONNECTING", "FAILED", "IN_PROGRESS",
            "NO_ANSWER", "QUEUED", "RINGING")),
    },
}
_READ_ONLY = {"hs_object_id", "hs_lastmodifieddate", "lastmodifieddate", "hs_is_closed", "notes_last_contacted",
              "notes_last_updated"}


def builtin_properties(object_type: str) -> list[PropertyDefinition]:
    group = f"{OBJECT_TYPES[object_type].singular}information"
    specs = {**_COMMON, **_BY_TYPE[object_type]}
    return [
        PropertyDefinition(
            name=name, type=kind, field_type=field_type, label=name.replace("_", " ").capitalize(),
            group_name=group, options=options, read_only=name in _READ_ONLY,
        )
        for name, (kind, field_type, options) in sorted(specs.items())
    ]


# HubSpot-defined association type ids, (from, to) -> typeId, both directions.
# Forward ids are those HubSpot documents; the reverse is the paired id it assigns.
_PAIRS = [
    ("contacts", "companies", 279, 280), ("deals", "contacts", 3, 4), ("deals", "companies", 341, 342),
    ("tickets", "contacts", 16, 15), ("tickets", "companies", 339, 340), ("deals", "tickets", 27, 28),
    ("tasks", "deals", 216, 215), ("tasks", "contacts", 204, 203), ("tasks", "companies", 192, 191),
    ("tasks", "tickets", 230, 229),
    ("notes", "deals", 214, 213), ("notes", "contacts", 202, 201), ("notes", "companies", 190, 189),
    ("notes", "tickets", 228, 227),
    ("emails", "deals", 210, 209), ("emails", "contacts", 198, 197), ("emails", "companies", 186, 185),
    ("emails", "tickets", 224, 223),
    ("calls", "deals", 206, 205), ("calls", "contacts", 194, 193), ("calls", "companies", 182, 181),
    ("calls", "tickets", 220, 219),
]
# Primary-company associations carry HubSpot's "Primary" label.
_PRIMARY = [("contacts", "companies", 1, 2), ("deals", "companies", 5, 6), ("tickets", "companies", 26, 25)]

# typeId -> (from type, to type, label or None); the reverse typeId is looked up through REVERSE_TYPE_ID
ASSOCIATION_TYPES: dict[int, tuple[str, str, str | None]] = {}
REVERSE_TYPE_ID: dict[int, int] = {}
_DEFAULTS: dict[tuple[str, str], int] = {}
for _a, _b, _fwd, _rev in _PAIRS:
    ASSOCIATION_TYPES[_fwd] = (_a, _b, None)
    ASSOCIATION_TYPES[_rev] = (_b, _a, None)
    REVERSE_TYPE_ID[_fwd], REVERSE_TYPE_ID[_rev] = _rev, _fwd
    _DEFAULTS[(_a, _b)], _DEFAULTS[(_b, _a)] = _fwd, _rev
for _a, _b, _fwd, _rev in _PRIMARY:
    ASSOCIATION_TYPES[_fwd] = (_a, _b, "Primary")
    ASSOCIATION_TYPES[_rev] = (_b, _a, "Primary")
    REVERSE_TYPE_ID[_fwd], REVERSE_TYPE_ID[_rev] = _rev, _fwd


def default_association_type(from_type: str, to_type: str) -> int | None:
    """The unlabeled HubSpot-defined type id between two object types (None if there is none)."""
    return _DEFAULTS.get((from_type, to_type))


# Pipelines. The second deal pipeline closes in a stage named "Signed" and uses opaque numeric
# stage ids, as custom pipelines do in HubSpot: code must read metadata.isClosed, never guess
# from a stage's name or id.
# (id, label, probability, isClosed)
DEAL_PIPELINES = [
    ("default", "Sales Pipeline", [
        ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
        ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
        ("presentationscheduled", "Presentation Scheduled", "0.6", False),
        ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
        ("contractsent", "Contract Sent", "0.9", False),
        ("closedwon", "Closed Won", "1.0", True),
        ("closedlost", "Closed Lost", "0.0", True),
    ]),
    ("75838291", "Renewals", [
        ("158342001", "Renewal Due", "0.3", False),
        ("158342002", "Negotiation", "0.7", False),
        ("158342003", "Signed", "1.0", True),
        ("158342004", "Not Renewing", "0.0", True),
    ]),
]
# (id, label, ticketState)
TICKET_PIPELINES = [
    ("0", "Support Pipeline", [
        ("1", "New", "OPEN"),
        ("2", "Waiting on contact", "OPEN"),
        ("3", "Waiting on us", "OPEN"),
        ("4", "Closed", "CLOSED"),
    ]),
]

# The portal's users as owners: (ownerId, userId, first, last, email, team, archived).
# Two are deactivated: HubSpot keeps them as archived owners that records may still point at.
PORTAL_USERS = [
    ("81273645", 5120001, "Avery", "Nakamura", "avery.nakamura@northwind.example", "Sales", False),
    ("81273646", 5120002, "Bianca", "Okafor", "bianca.okafor@northwind.example", "Sales", False),
    ("81273647", 5120003, "Carlos", "Mendes", "carlos.mendes@northwind.example", "Sales", False),
    ("81273648", 5120004, "Dana", "Whitfield", "dana.whitfield@northwind.example", "Sales", False),
    ("81273649", 5120005, "Emeka", "Lindqvist", "emeka.lindqvist@northwind.example", "Support", False),
    ("81273650", 5120006, "Farah", "Castellanos", "farah.castellanos@northwind.example", "Support", False),
    ("81273651", 5120007, "Gustav", "Ferreira", "gustav.ferreira@northwind.example", "Sales", True),
    ("81273652", 5120008, "Hana", "Kowalczyk", "hana.kowalczyk@northwind.example", "Support", True),
]
TEAM_IDS = {"Sales": "4410001", "Support": "4410002"}
