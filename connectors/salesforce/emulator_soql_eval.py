"""Run parsed SOQL against an `OrgState`: name resolution, type checks, filtering, shaping.

Errors follow Salesforce: an unknown object is INVALID_TYPE, an unknown column or
relationship INVALID_FIELD, a literal of the wrong type INVALID_QUERY_FILTER_OPERATOR.
Results are shaped like the REST API's: `attributes` on every record, parent fields nested
under the relationship name (`"Owner": {"attributes": ..., "Name": ...}` or null), child
sub-queries as `{"totalSize", "done", "records"}` or null when empty.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable, Iterable

from .emulator_schema import ID_TYPES, NUMBER_TYPES, FieldDef, ObjectDef
from .emulator_soql import (
    BoolOp, Comparison, Condition, FieldPath, InList, Like, Literal, Not, OrderItem, Query, SubQuery, parse,
)
from .emulator_state import OrgState
from .emulator_wire import SalesforceError, normalize_id, to_json_value

__all__ = ["QueryEngine", "QueryResult"]

_POLYMORPHIC_TYPE = FieldDef("Type", "string", createable=False, updateable=False)
# Objects a real org refuses to list wholesale: a query must filter on one of these paths
# (= one value or IN several), or it fails with MALFORMED_QUERY.
_REQUIRED_FILTERS = {
    "ContentDocumentLink": ({"linkedentityid", "contentdocumentid"}, (
        "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId or "
        "LinkedEntityId using the equals operator or multiple Id's using the IN operator.")),
    "FieldDefinition": ({"entitydefinitionid", "entitydefinition.qualifiedapiname", "entitydefinition.durableid",
                         "durableid"}, (
        "Implementation restriction: FieldDefinition requires a filter by a single Durable Id, EntityDefinitionId "
        "or EntityDefinition.QualifiedApiName using the equals operator, or several using the IN operator.")),
}


@dataclass(frozen=True)
class QueryResult:
    sobject: str
    total_size: int
    records: list[dict]


@dataclass(frozen=True)
class ResolvedPath:
    """A field path checked against the schema, ready to read values from records."""

    output_names: tuple[str, ...]  # canonical relationship names, then the field: ("Owner", "Name")
    references: tuple[FieldDef, ...]  # the reference fields walked: (OwnerId,)
    leaf: FieldDef

    @property
    def polymorphic_type(self) -> bool:
        return self.leaf is _POLYMORPHIC_TYPE


@dataclass(frozen=True)
class _Plan:
    obj: ObjectDef
    columns: tuple[ResolvedPath | tuple[str, "_Plan", Any], ...]  # sub-queries: (name, plan, relationship)
    predicate: Callable[[dict], bool] | None
    sort_keys: tuple[tuple[Callable[[dict], Any], bool], ...]
    query: Query


class QueryEngine:
    def __init__(self, state: OrgState) -> None:
        self.state = state

    def execute(self, text: str, *, include_deleted: bool = False, api_version: str = "59.0") -> QueryResult:
        query = parse(text)
        with self.state.lock:
            obj = self._object(query.sobject)
            plan = self._plan(obj, query)
            required = _REQUIRED_FILTERS.get(obj.name)
            if required and not _filters_on(query.where, required[0]):
                raise SalesforceError(400, "MALFORMED_QUERY", required[1])
            rows = self._rows(plan, self._candidates(obj, query.where, include_deleted))
            if query.count_only:
                return QueryResult(obj.name, len(rows), [])
            return QueryResult(obj.name, len(rows), [self._shape(plan, row, api_version) for row in rows])

    # ------------------------------------------------------------ planning
    def _object(self, name: str) -> ObjectDef:
        try:
            return self.state.object_def(name)
        except SalesforceError:
            raise SalesforceError(400, "INVALID_TYPE", (
                f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure "
                "to append the '__c' after the entity name. Please reference your WSDL or the describe call for "
                "the appropriate names.")) from None

    def _plan(self, obj: ObjectDef, query: Query) -> _Plan:
        columns: list[Any] = []
        seen: set[str] = set()
        for item in query.fields:
            if isinstance(item, SubQuery):
                relationship = obj.child(item.query.sobject)
                if relationship is None:
                    raise SalesforceError(400, "INVALID_TYPE", (
                        f"Didn't understand relationship '{item.query.sobject}' in FROM part of query call. If you "
                        "are attempting to use a custom relationship, be sure to append the '__r' after the custom "
                        "relationship name."))
                child_plan = self._plan(self.state.schema[relationship.child], item.query)
                columns.append((relationship.name, child_plan, relationship))
                continue
            resolved = self.resolve(obj, item)
            key = ".".join(resolved.output_names).lower()
            if key in seen:
                raise SalesforceError(400, "MALFORMED_QUERY", f"duplicate field selected: {item}")
            seen.add(key)
            columns.append(resolved)
        predicate = self._condition(obj, query.where) if query.where is not None else None
        sort_keys = tuple(self._sort_key(obj, item) for item in query.order_by)
        return _Plan(obj, tuple(columns), predicate, sort_keys, query)

    def resolve(self, obj: ObjectDef, path: FieldPath) -> ResolvedPath:
        names: list[str] = []
        references: list[FieldDef] = []
        targets: tuple[str, ...] = (obj.name,)
        for part in path.parts[:-1]:
            current = self.state.schema[targets[0]]
            relationship = current.relationship(part) if len(targets) == 1 else None
            if relationship is None:
                raise SalesforceError(400, "INVALID_FIELD", (
                    f"Didn't understand relationship '{part}' in field path. If you are attempting to use a custom "
                    "relationship, be sure to append the '__r' after the custom relationship name."))
            names.append(relationship.relationship_name)  # type: ignore[arg-type]
            references.append(relationship)
            targets = relationship.reference_to
        last = path.parts[-1]
        if len(targets) > 1 and last.lower() == "type":
            leaf: FieldDef | None = _POLYMORPHIC_TYPE
        else:
            leaf = next((f for f in (self.state.schema[t].get_field(last) for t in targets) if f), None)
        if leaf is None:
            entity = targets[0] if len(targets) == 1 else "Name"
            raise SalesforceError(400, "INVALID_FIELD", (
                f"No such column '{last}' on entity '{entity}'. If you are attempting to use a custom field, be "
                "sure to append the '__c' after the custom field name. Please reference your WSDL or the describe "
                "call for the appropriate names."))
        return ResolvedPath(tuple(names) + (leaf.name,), tuple(references), leaf)

    def _getter(self, resolved: ResolvedPath) -> Callable[[dict], Any]:
        lookup = self.state.get
        if not resolved.references:
            name = resolved.leaf.name
            return lambda record: record.get(name)

        def read(record: dict) -> Any:
            current_type, current = None, record
            for reference in resolved.references:
                found = lookup(current.get(reference.name), include_deleted=True)
                if found is None:
                    return None
                current_type, current = found
            return _name_type(current_type, current) if resolved.polymorphic_type else current.get(resolved.leaf.name)

        return read

    # ------------------------------------------------------------ WHERE
    def _condition(self, obj: ObjectDef, condition: Condition) -> Callable[[dict], bool]:
        if isinstance(condition, BoolOp):
            parts = [self._condition(obj, operand) for operand in condition.operands]
            if condition.operator == "AND":
                return lambda record: all(part(record) for part in parts)
            return lambda record: any(part(record) for part in parts)
        if isinstance(condition, Not):
            inner = self._condition(obj, condition.operand)
            return lambda record: not inner(record)
        resolved = self._filterable(obj, condition.path)
        read = self._getter(resolved)
        if isinstance(condition, Like):
            if resolved.leaf.type in ID_TYPES | NUMBER_TYPES | {"boolean", "date", "datetime"}:
                raise _filter_error(resolved.leaf, "string", "LIKE works on text fields only")
            regex = _like_regex(condition.pattern.value)
            return lambda record: (value := read(record)) is not None and regex.match(str(value)) is not None
        if isinstance(condition, InList):
            wanted = {self._normalize(resolved.leaf, self._literal(resolved.leaf, v, "IN")) for v in condition.values}
            negated = condition.negated
            normalize = self._normalize
            leaf = resolved.leaf
            return lambda record: (normalize(leaf, read(record)) in wanted) != negated
        return self._comparison(resolved, read, condition)

    def _comparison(self, resolved: ResolvedPath, read: Callable[[dict], Any],
                    condition: Comparison) -> Callable[[dict], bool]:
        leaf, operator = resolved.leaf, condition.operator
        literal = self._literal(leaf, condition.value, operator)
        if literal is None:
            if operator not in {"=", "!="}:
                raise _filter_error(leaf, leaf.type, f"null can only be compared with = or !=")
            return (lambda r: read(r) is None) if operator == "=" else (lambda r: read(r) is not None)
        if isinstance(literal, _Range):
            start, end = literal.bounds(leaf.type)
            tests = {
                "=": lambda v: start <= v < end, "!=": lambda v: not start <= v < end,
                "<": lambda v: v < start, "<=": lambda v: v < end, ">": lambda v: v >= end, ">=": lambda v: v >= start,
            }
        else:
            target = self._normalize(leaf, literal)
            tests = {
                "=": lambda v: v == target, "!=": lambda v: v != target, "<": lambda v: v < target,
                "<=": lambda v: v <= target, ">": lambda v: v > target, ">=": lambda v: v >= target,
            }
        test = tests[operator]
        normalize = self._normalize
        if operator == "!=":
            return lambda record: (value := normalize(leaf, read(record))) is None or test(value)
        return lambda record: (value := normalize(leaf, read(record))) is not None and test(value)

    def _filterable(self, obj: ObjectDef, path: FieldPath) -> ResolvedPath:
        resolved = self.resolve(obj, path)
        if not resolved.leaf.filterable:
            raise SalesforceError(400, "INVALID_FIELD", (
                f"field '{resolved.leaf.name}' can not be filtered in a query call"))
        return resolved

    def _literal(self, leaf: FieldDef, literal: Literal, operator: str) -> Any:
        """The literal's value if its type suits the field, else Salesforce's filter error."""
        if literal.kind == "null":
            return None
        kind = leaf.type
        if kind == "date" or kind == "datetime":
            expected = {"date": {"date", "relative_date"}, "datetime": {"datetime", "relative_date"}}[kind]
            if literal.kind not in expected:
                quoted = " and should not be enclosed in quotes" if literal.kind == "string" else ""
                raise _filter_error(leaf, "date" if kind == "date" else "dateTime", quoted)
        elif kind == "boolean" and literal.kind != "boolean":
            raise _filter_error(leaf, "boolean", " and should not be enclosed in quotes")
        elif kind in NUMBER_TYPES and literal.kind != "number":
            raise _filter_error(leaf, "double", " and should not be enclosed in quotes")
        elif kind not in NUMBER_TYPES | {"boolean", "date", "datetime"} and literal.kind != "string":
            raise _filter_error(leaf, "string", " and should be enclosed in quotes")
        if literal.kind == "relative_date":
            if operator == "IN":
                raise _filter_error(leaf, kind, ": date literals like TODAY cannot be used with IN")
            word, days = literal.value
            return _Range(word, days, self.state.clock().date())
        return literal.value

    @staticmethod
    def _normalize(leaf: FieldDef, value: Any) -> Any:
        """SOQL compares text case-insensitively and accepts 15-character ids for 18-character ones."""
        if value is None:
            return None
        if leaf.type in ID_TYPES:
            return normalize_id(value)
        if isinstance(value, str) and leaf.type not in {"date", "datetime"}:
            return value.casefold()
        return value

    # ------------------------------------------------------------ ORDER BY, rows, shaping
    def _sort_key(self, obj: ObjectDef, item: OrderItem) -> tuple[Callable[[dict], Any], bool]:
        resolved = self._filterable(obj, item.path)
        read = self._getter(resolved)
        nulls_first = not item.nulls_last if item.nulls_last is not None else not item.descending
        # Sorting reverses whole tuples for DESC, so place nulls before reversal accordingly.
        null_key = (0,) if nulls_first != item.descending else (2,)
        leaf = resolved.leaf
        normalize = self._normalize

        def key(record: dict) -> tuple:
            value = normalize(leaf, read(record))
            return null_key if value is None else (1, value)

        return key, item.descending

    def _candidates(self, obj: ObjectDef, where: Condition | None, include_deleted: bool) -> Iterable[dict]:
        """Use the id or a parent index when a top-level condition pins them; else scan the table."""
        conjuncts = where.operands if isinstance(where, BoolOp) and where.operator == "AND" else (where,)
        for condition in conjuncts:
            if isinstance(condition, Comparison) and condition.operator == "=" and condition.value.kind == "string":
                values = [condition.value.value]
            elif isinstance(condition, InList) and not condition.negated:
                values = [v.value for v in condition.values if v.kind == "string"]
            else:
                continue
            if len(condition.path.parts) != 1:
                continue
            definition = obj.get_field(condition.path.parts[0])
            if definition is None or definition.type not in ID_TYPES:
                continue
            ids = {normalize_id(v) for v in values}
            table = self.state.records[obj.name]
            if definition.name == "Id":
                found = [table[i] for i in sorted(ids) if i in table]
            else:
                index = self.state.children.get((obj.name, definition.name))
                if index is None:
                    continue
                found = [table[i] for i in sorted({c for p in ids for c in index.get(p, ())})]
            return [r for r in found if include_deleted or not r["IsDeleted"]]
        return list(self.state.live_records(obj.name, include_deleted=include_deleted))

    def _rows(self, plan: _Plan, candidates: Iterable[dict]) -> list[dict]:
        rows = [r for r in candidates if plan.predicate(r)] if plan.predicate else list(candidates)
        for key, descending in reversed(plan.sort_keys):
            rows.sort(key=key, reverse=descending)
        start = plan.query.offset or 0
        end = start + plan.query.limit if plan.query.limit is not None else None
        return rows[start:end]

    def _shape(self, plan: _Plan, record: dict, api_version: str) -> dict:
        shaped = {"attributes": _attributes(plan.obj.name, record["Id"], api_version)}
        for column in plan.columns:
            if isinstance(column, ResolvedPath):
                self._place(shaped, record, column, api_version)
                continue
            name, child_plan, relationship = column
            children = self.state.child_records(relationship.child, relationship.field, record["Id"])
            child_rows = self._rows(child_plan, children)
            shaped[name] = None if not child_rows else {
                "totalSize": len(child_rows), "done": True,
                "records": [self._shape(child_plan, child, api_version) for child in child_rows],
            }
        return shaped

    def _place(self, shaped: dict, record: dict, resolved: ResolvedPath, api_version: str) -> None:
        container, current, current_type = shaped, record, None
        for name, reference in zip(resolved.output_names, resolved.references):
            if name in container:
                if container[name] is None:
                    return
            else:
                found = self.state.get(current.get(reference.name), include_deleted=True)
                if found is None:
                    container[name] = None
                    return
                type_name = "Name" if reference.polymorphic else found[0]
                container[name] = {"attributes": _attributes(type_name, found[1]["Id"], api_version, found[0])}
            found = self.state.get(current.get(reference.name), include_deleted=True)
            current_type, current = found  # type: ignore[misc]
            container = container[name]
        leaf_name = resolved.output_names[-1]
        if resolved.polymorphic_type:
            container[leaf_name] = _name_type(current_type, current)
        elif resolved.leaf.type == "base64":
            # Blobs are never inlined: the REST API answers with the URL that streams the body.
            owner_type = current_type or self.state.object_def(shaped["attributes"]["type"]).name
            container[leaf_name] = (f"/services/data/v{api_version}/sobjects/{owner_type}/{current['Id']}/{leaf_name}"
                                    if current.get(leaf_name) is not None else None)
        else:
            container[leaf_name] = to_json_value(current.get(leaf_name))


@dataclass(frozen=True)
class _Range:
    """A relative date literal (TODAY, LAST_N_DAYS:n, ...) as a half-open range of days."""

    word: str
    days: int
    today: date

    def bounds(self, field_type: str) -> tuple[Any, Any]:
        start, end = self._days()
        if field_type == "datetime":
            return (datetime.combine(start, time(), timezone.utc), datetime.combine(end, time(), timezone.utc))
        return start, end

    def _days(self) -> tuple[date, date]:
        today, one = self.today, timedelta(days=1)
        week_start = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday (en_US)
        month_start = today.replace(day=1)
        next_month = month_start + timedelta(days=calendar.monthrange(today.year, today.month)[1])
        previous_month = (month_start - one).replace(day=1)
        return {
            "TODAY": (today, today + one),
            "YESTERDAY": (today - one, today),
            "TOMORROW": (today + one, today + 2 * one),
            "LAST_N_DAYS": (today - self.days * one, today + one),
            "NEXT_N_DAYS": (today + one, today + (self.days + 1) * one),
            "THIS_WEEK": (week_start, week_start + 7 * one),
            "LAST_WEEK": (week_start - 7 * one, week_start),
            "NEXT_WEEK": (week_start + 7 * one, week_start + 14 * one),
            "THIS_MONTH": (month_start, next_month),
            "LAST_MONTH": (previous_month, month_start),
            "NEXT_MONTH": (next_month, (next_month + 32 * one).replace(day=1)),
        }[self.word]


def _name_type(sobject: str | None, record: dict) -> str | None:
    """`Owner.Type` and friends: the object name, except that a queue reports "Queue"."""
    return record.get("Type") if sobject == "Group" else sobject


def _attributes(type_name: str, record_id: str, api_version: str, url_type: str | None = None) -> dict:
    return {"type": type_name, "url": f"/services/data/v{api_version}/sobjects/{url_type or type_name}/{record_id}"}


def _filter_error(leaf: FieldDef, expected: str, detail: str) -> SalesforceError:
    return SalesforceError(400, "INVALID_QUERY_FILTER_OPERATOR",
                           f"value of filter criterion for field '{leaf.name}' must be of type {expected}{detail}")


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for token in re.findall(r"\\[%_]|%|_|[^%_\\]+|\\", pattern):
        parts.append({"%": ".*", "_": "."}.get(token, re.escape(token[-1] if token in {"\\%", "\\_"} else token)))
    return re.compile("".join(parts) + r"\Z", re.IGNORECASE | re.DOTALL)


def _filters_on(condition: Condition | None, paths: set[str]) -> bool:
    """Whether every row the condition admits is pinned by `=` or `IN` on one of `paths` (lower case)."""
    if isinstance(condition, BoolOp):
        return any(_filters_on(operand, paths) for operand in condition.operands) \
            if condition.operator == "AND" else all(_filters_on(o, paths) for o in condition.operands)
    if isinstance(condition, Comparison) and condition.operator != "=":
        return False
    if isinstance(condition, (Comparison, InList)):
        return str(condition.path).lower() in paths and not getattr(condition, "negated", False)
    return False
