"""CRM search semantics: filterGroups, operators, sorting and HubSpot's limits."""

from __future__ import annotations

from fnmatch import fnmatchcase

from .emulator_catalog import PropertyDefinition
from .emulator_state import CrmError, Record, parse_time_ms

__all__ = ["search_records", "MAX_RESULTS", "MAX_LIMIT"]

MAX_RESULTS = 10_000  # HubSpot never pages past this many results of one query
MAX_LIMIT = 200
MAX_FILTER_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
_OPERATORS = {"EQ", "NEQ", "GT", "GTE", "LT", "LTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
              "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}


def _bad_request(message: str) -> CrmError:
    return CrmError(400, "VALIDATION_ERROR", message)


def _comparable(definition: PropertyDefinition | None, value):
    """The value as HubSpot compares it: numbers and dates numerically, text case-insensitively."""
    if value is None or value == "":
        return None
    kind = definition.type if definition else "string"
    if kind in ("datetime", "date"):
        return parse_time_ms(value)
    if kind == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return str(value).lower()


def _matches_filter(record: Record, spec: dict, definitions: dict[str, PropertyDefinition]) -> bool:
    name, operator = spec["propertyName"], spec["operator"]
    definition = definitions.get(name)
    actual = _comparable(definition, record.properties.get(name))
    if operator == "HAS_PROPERTY":
        return actual is not None
    if operator == "NOT_HAS_PROPERTY":
        return actual is None
    if operator in ("IN", "NOT_IN"):
        wanted = {_comparable(definition, v) for v in spec.get("values") or []}
        return (actual in wanted) if operator == "IN" else (actual not in wanted)
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = str(spec.get("value", "")).lower()
        tokens = str(actual or "").split()
        found = any(fnmatchcase(token, pattern) for token in tokens)
        return found if operator == "CONTAINS_TOKEN" else not found
    expected = _comparable(definition, spec.get("value"))
    if operator == "NEQ":
        return actual != expected
    if actual is None or expected is None:
        return False
    if type(actual) is not type(expected):  # e.g. a text value against a numeric filter
        actual, expected = str(actual), str(expected)
    if operator == "EQ":
        return actual == expected
    if operator == "BETWEEN":
        high = _comparable(definition, spec.get("highValue"))
        return high is not None and expected <= actual <= high
    return {"GT": actual > expected, "GTE": actual >= expected,
            "LT": actual < expected, "LTE": actual <= expected}[operator]


def _validate(body: dict) -> tuple[list[dict], int, int]:
    groups = body.get("filterGroups") or []
    if len(groups) > MAX_FILTER_GROUPS:
        raise _bad_request(f"Too many filter groups: {len(groups)}. The maximum is {MAX_FILTER_GROUPS}.")
    total_filters = 0
    for group in groups:
        filters = group.get("filters") or []
        total_filters += len(filters)
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise _bad_request(f"Too many filters in a group: {len(filters)}. The maximum is {MAX_FILTERS_PER_GROUP}.")
        for spec in filters:
            if spec.get("operator") not in _OPERATORS:
                raise _bad_request(f"Unknown filter operator {spec.get('operator')!r}")
            if spec["operator"] in ("IN", "NOT_IN") and not spec.get("values"):
                raise _bad_request(f"Operator {spec['operator']} requires 'values'")
    if total_filters > MAX_FILTERS:
        raise _bad_request(f"Too many filters: {total_filters}. The maximum is {MAX_FILTERS}.")
    limit = body.get("limit", 10)
    if limit is None:
        limit = 10
    if not 0 < int(limit) <= MAX_LIMIT:
        raise _bad_request(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    after = body.get("after") or "0"
    if not str(after).isdigit():
        raise _bad_request(f"Invalid 'after' paging token: {after!r}")
    return groups, int(limit), int(after)


def _sort_spec(body: dict) -> tuple[str, bool]:
    """HubSpot takes one sort, as {"propertyName", "direction"} or as "name" / "-name"."""
    sorts = body.get("sorts") or []
    if not sorts:
        return "hs_object_id", False
    first = sorts[0]
    if isinstance(first, dict):
        return first.get("propertyName", "hs_object_id"), first.get("direction", "ASCENDING") == "DESCENDING"
    text = str(first)
    return text.lstrip("-"), text.startswith("-")


def search_records(records: list[Record], body: dict, definitions: dict[str, PropertyDefinition],
                   text_properties: tuple[str, ...]) -> tuple[list[Record], int, int | None]:
    """One page of a search: (records, total, next `after` or None)."""
    groups, limit, after = _validate(body)
    if after >= MAX_RESULTS:
        # HubSpot refuses to page past its cap rather than returning an empty page.
        raise _bad_request(f"The maximum number of results that can be paged through is {MAX_RESULTS}. "
                           f"Use filters to narrow the search (after={after}).")
    query = str(body.get("query") or "").lower()
    matched = [
        r for r in records
        if (not groups or any(all(_matches_filter(r, f, definitions) for f in g.get("filters") or [])
                              for g in groups))
        and (not query or any(query in str(r.properties.get(p, "")).lower() for p in text_properties))
    ]
    sort_property, descending = _sort_spec(body)
    definition = definitions.get(sort_property)

    def key(record: Record):
        value = _comparable(definition, record.properties.get(sort_property))
        # Records without the value come last in either direction, as in HubSpot's UI.
        missing = value is None
        return (missing if not descending else not missing, value if value is not None else 0)

    # `records` arrive in id order and sorting is stable, so ties stay in id order.
    if sort_property != "hs_object_id" or descending:
        matched.sort(key=key, reverse=descending)
    page = matched[after:after + limit]
    next_after = after + limit if after + limit < len(matched) else None
    return page, len(matched), next_after
