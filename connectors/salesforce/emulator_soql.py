"""SOQL for the Salesforce emulator: a tokenizer and a recursive-descent parser.

The grammar is the subset a CRM connector uses (see `parse`); everything else fails loudly
with MALFORMED_QUERY instead of being half-understood. Names are resolved and literals
type-checked against the org's schema in `emulator_soql_eval.py`.

    query       := SELECT select_list FROM name [WHERE condition]
                   [ORDER BY order_item ("," order_item)*] [LIMIT int] [OFFSET int]
    select_list := COUNT "(" ")" | select_item ("," select_item)*
    select_item := path | "(" query ")"                      -- a child relationship sub-query
    condition   := unary (AND unary)* | unary (OR unary)*     -- mixing needs parentheses
    unary       := NOT unary | "(" condition ")" | path operator value
                 | path [NOT] IN "(" value ("," value)* ")" | path LIKE string
    value       := string | number | TRUE | FALSE | NULL | date | datetime
                 | TODAY | YESTERDAY | TOMORROW | LAST_N_DAYS:n | NEXT_N_DAYS:n
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Union

from .emulator_wire import SalesforceError, parse_datetime

__all__ = [
    "FieldPath", "SubQuery", "Query", "Literal", "Comparison", "InList", "Like", "BoolOp", "Not",
    "OrderItem", "parse", "malformed",
]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),.:])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\",
            "%": "\\%", "_": "\\_"}  # \% and \_ stay escaped: they only mean something to LIKE
# Parts of SOQL a connector might reach for but the emulator does not model.
_UNSUPPORTED = {"GROUP", "HAVING", "WITH", "FOR", "TYPEOF", "USING", "INCLUDES", "EXCLUDES", "FIELDS",
                "ROLLUP", "CUBE", "FORMAT", "CONVERTCURRENCY", "TOLABEL", "ALL"}
_AGGREGATES = {"COUNT", "SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT"}
RELATIVE_DATES = {"TODAY", "YESTERDAY", "TOMORROW", "LAST_N_DAYS", "NEXT_N_DAYS", "THIS_WEEK", "LAST_WEEK",
                  "NEXT_WEEK", "THIS_MONTH", "LAST_MONTH", "NEXT_MONTH"}
_RESERVED = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET",
             "ASC", "DESC", "NULLS", "TRUE", "FALSE", "NULL"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    column: int

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "name" and self.text.upper() in words


@dataclass(frozen=True)
class FieldPath:
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | boolean | null | date | datetime | relative_date
    value: Any
    text: str


@dataclass(frozen=True)
class Comparison:
    path: FieldPath
    operator: str  # = != < <= > >=
    value: Literal


@dataclass(frozen=True)
class InList:
    path: FieldPath
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    path: FieldPath
    pattern: Literal


@dataclass(frozen=True)
class BoolOp:
    operator: str  # AND | OR
    operands: tuple["Condition", ...]


@dataclass(frozen=True)
class Not:
    operand: "Condition"


Condition = Union[Comparison, InList, Like, BoolOp, Not]


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool = False
    nulls_last: bool | None = None  # None: Salesforce's default (NULLS FIRST ascending, LAST descending)


@dataclass(frozen=True)
class SubQuery:
    query: "Query"


@dataclass(frozen=True)
class Query:
    sobject: str
    fields: tuple[Union[FieldPath, SubQuery], ...] = ()
    count_only: bool = False
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    text: str = field(default="", compare=False)


def malformed(text: str, column: int, problem: str) -> SalesforceError:
    """A MALFORMED_QUERY error pointing at the column, the way Salesforce prints it."""
    pointer = " " * column + "^"
    return SalesforceError(400, "MALFORMED_QUERY",
                           f"\n{text}\n{pointer}\nERROR at Row:1:Column:{column + 1}\n{problem}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            snippet = text[position:position + 10]
            raise malformed(text, position, f"unexpected token: '{snippet}'" if text[position] != "'" else
                            "line 1:{}: unterminated string literal".format(position))
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup, match.group(), position))  # type: ignore[arg-type]
        position = match.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise SalesforceError(400, "MALFORMED_QUERY", "A query string must be provided")
    parser = _Parser(text)
    query = parser.query()
    parser.expect_end()
    return query


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.position = 0

    # ------------------------------------------------------------- token helpers
    @property
    def current(self) -> Token:
        return self.tokens[self.position]

    def advance(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def accept(self, *words: str) -> Token | None:
        if self.current.is_keyword(*words):
            return self.advance()
        return None

    def accept_punct(self, symbol: str) -> bool:
        if self.current.kind == "punct" and self.current.text == symbol:
            self.position += 1
            return True
        return False

    def expect(self, *words: str) -> Token:
        token = self.accept(*words)
        if token is None:
            raise self.unexpected()
        return token

    def expect_punct(self, symbol: str) -> None:
        if not self.accept_punct(symbol):
            raise self.unexpected()

    def unexpected(self, problem: str | None = None) -> SalesforceError:
        token = self.current
        if token.is_keyword(*_UNSUPPORTED):
            problem = problem or f"'{token.text.upper()}' is not supported by the Salesforce emulator"
        return malformed(self.text, token.column, problem or f"unexpected token: '{token.text}'")

    def expect_end(self) -> None:
        if self.current.kind != "eof":
            raise self.unexpected()

    # ------------------------------------------------------------- grammar
    def query(self) -> Query:
        start = self.current.column
        self.expect("SELECT")
        fields: list[Union[FieldPath, SubQuery]] = []
        count_only = False
        if self.current.is_keyword(*_AGGREGATES) and self.tokens[self.position + 1].text == "(":
            function = self.advance()
            self.expect_punct("(")
            if function.text.upper() != "COUNT" or not self.accept_punct(")"):
                raise malformed(self.text, function.column,
                                "only COUNT() is supported by the Salesforce emulator; aggregate functions are not")
            count_only = True
        else:
            fields.append(self.select_item())
            while self.accept_punct(","):
                fields.append(self.select_item())
        self.expect("FROM")
        sobject = self.name("an object name")
        where = self.condition() if self.accept("WHERE") else None
        order_by: list[OrderItem] = []
        if self.accept("ORDER"):
            self.expect("BY")
            order_by.append(self.order_item())
            while self.accept_punct(","):
                order_by.append(self.order_item())
        limit = self.integer() if self.accept("LIMIT") else None
        offset = self.integer() if self.accept("OFFSET") else None
        end = self.current.column
        return Query(sobject, tuple(fields), count_only, where, tuple(order_by), limit, offset,
                     self.text[start:end].strip())

    def select_item(self) -> Union[FieldPath, SubQuery]:
        if self.accept_punct("("):
            sub = self.query()
            self.expect_punct(")")
            if sub.count_only:
                raise malformed(self.text, self.current.column, "COUNT() is not allowed in a sub-query")
            return SubQuery(sub)
        if self.current.is_keyword(*_AGGREGATES) and self.tokens[self.position + 1].text == "(":
            raise malformed(self.text, self.current.column,
                            "only COUNT() is supported by the Salesforce emulator; aggregate functions are not")
        return self.path()

    def name(self, what: str) -> str:
        token = self.current
        if token.kind != "name" or token.text.upper() in _RESERVED:
            raise self.unexpected(f"unexpected token: '{token.text}' (expected {what})")
        return self.advance().text

    def path(self) -> FieldPath:
        parts = [self.name("a field name")]
        while self.accept_punct("."):
            parts.append(self.name("a field name"))
        return FieldPath(tuple(parts))

    def integer(self) -> int:
        token = self.current
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(f"unexpected token: '{token.text}' (expected a non-negative integer)")
        self.advance()
        return int(token.text)

    def order_item(self) -> OrderItem:
        path = self.path()
        direction = self.accept("ASC", "DESC")
        descending = direction is not None and direction.text.upper() == "DESC"
        nulls_last = None
        if self.accept("NULLS"):
            nulls_last = self.expect("FIRST", "LAST").text.upper() == "LAST"
        return OrderItem(path, descending, nulls_last)

    def condition(self) -> Condition:
        operands = [self.unary()]
        operator = None
        while self.current.is_keyword("AND", "OR"):
            word = self.current.text.upper()
            if operator is not None and word != operator:
                # SOQL refuses `a AND b OR c`: the reader must say which one binds.
                raise self.unexpected(f"unexpected token: '{self.current.text}' "
                                      "(use parentheses to mix AND and OR)")
            operator = word
            self.advance()
            operands.append(self.unary())
        return operands[0] if operator is None else BoolOp(operator, tuple(operands))

    def unary(self) -> Condition:
        if self.accept("NOT"):
            return Not(self.unary())
        if self.accept_punct("("):
            inner = self.condition()
            self.expect_punct(")")
            return inner
        path = self.path()
        token = self.current
        if token.kind == "op":
            self.advance()
            operator = "!=" if token.text == "<>" else token.text
            return Comparison(path, operator, self.value())
        if self.accept("LIKE"):
            pattern = self.value()
            if pattern.kind != "string":
                raise malformed(self.text, token.column, "LIKE needs a string pattern")
            return Like(path, pattern)
        negated = bool(self.accept("NOT"))
        if self.accept("IN"):
            self.expect_punct("(")
            if self.current.is_keyword("SELECT"):
                raise self.unexpected("semi-join sub-selects are not supported by the Salesforce emulator")
            values = [self.value()]
            while self.accept_punct(","):
                values.append(self.value())
            self.expect_punct(")")
            return InList(path, tuple(values), negated)
        raise self.unexpected()

    def value(self) -> Literal:
        token = self.current
        if token.kind == "string":
            self.advance()
            body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token.text[1:-1])
            return Literal("string", body, token.text)
        if token.kind == "number":
            self.advance()
            number = float(token.text) if "." in token.text else int(token.text)
            return Literal("number", number, token.text)
        if token.kind == "date":
            self.advance()
            try:
                return Literal("date", date.fromisoformat(token.text), token.text)
            except ValueError:
                raise malformed(self.text, token.column, f"invalid date: {token.text}") from None
        if token.kind == "datetime":
            self.advance()
            try:
                return Literal("datetime", parse_datetime(token.text), token.text)
            except ValueError:
                raise malformed(self.text, token.column, f"invalid dateTime: {token.text}") from None
        if token.is_keyword("TRUE", "FALSE"):
            self.advance()
            return Literal("boolean", token.text.upper() == "TRUE", token.text)
        if token.is_keyword("NULL"):
            self.advance()
            return Literal("null", None, token.text)
        if token.is_keyword(*RELATIVE_DATES):
            self.advance()
            word = token.text.upper()
            if word.endswith("_N_DAYS"):
                self.expect_punct(":")
                return Literal("relative_date", (word, self.integer()), f"{word}:{self.tokens[self.position - 1].text}")
            return Literal("relative_date", (word, 0), word)
        if token.kind == "punct" and token.text == ":":
            raise self.unexpected("bind variables are Apex-only; send literal values")
        raise self.unexpected()
