"""Filters on an event's data, in Convoy's syntax: which events a webhook gets.

A filter is a JSON object. Each key is a field of the data, as a dotted path for nested
fields (`"customer.tier"`, or the same written as nested objects `{"customer": {"tier": ..}}`),
and each value is either the value the field must have or an object of operators:

    {"outlet": "Main"}                        equal (for an array field: one element is)
    {"total": {"$gte": 100000}}               $eq $neq $gt $gte $lt $lte
    {"outlet": {"$in": ["Main", "Airport"]}}  $in $nin (for an array field: any element)
    {"note": {"$exist": true}}                the field is there (null counts), or is not
    {"code": {"$regex": "^SKU-[0-9]+$"}}      RE2 syntax, as Convoy's Go regexp
    {"$or": [{...}, {...}]}, {"$and": [...]}  any / all of several filters

All keys of an object must hold. Arrays of objects are reached with an index
(`"items.0.sku"`) or with `$` for "any element" (`"items.$.sku"`), as Convoy flattens them.
A field that is missing fails every condition except `$exist: false`, `$neq` and `$nin`.

`compile_filter` validates a filter (raising `FilterError` with a message naming the bad
operator or path) and `matches` applies it. Both are pure: no model, no I/O.

Bounds, so that no filter can stall the web on save or a worker on emit: the filter's
JSON size, nesting depth, number of conditions, path length and `$` wildcards, list sizes
and `$regex` length are capped. `$regex` runs on RE2 (google-re2), whose matching time is
linear in the text and which refuses backreferences and lookarounds, the constructs that
make Python's backtracking `re` take exponential time; Python's `re` has no timeout, so a
pattern check before running it could not be trusted to catch every slow pattern. RE2 is
also what Convoy's Go `regexp` implements, so patterns behave as integrators know them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

MAX_FILTER_BYTES = 8192
MAX_DEPTH = 10
MAX_CONDITIONS = 50
MAX_PATH_LENGTH = 256
MAX_PATH_SEGMENTS = 16
MAX_WILDCARDS = 3  # Convoy's own limit on `$` segments in one path
MAX_LIST_ITEMS = 100
MAX_REGEX_LENGTH = 256
REGEX_MAX_MEM = 1 << 20  # bytes RE2 may use for one compiled pattern

COMPARISONS = ("$eq", "$neq", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exist", "$regex")
LOGICAL = ("$and", "$or")
WILDCARD = "$"

_EQUAL = "="  # a plain value: equality, or membership for an array field


class FilterError(ValueError):
    """A filter that cannot be used; the message names the bad operator or path."""


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    op: str
    operand: Any
    pattern: Any = None  # the compiled RE2 pattern of a $regex


@dataclass(frozen=True)
class Logical:
    op: str  # "$and" or "$or"
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Filter:
    """A validated filter: every node must hold."""

    nodes: tuple[Condition | Logical, ...]

    def matches(self, data: Any) -> bool:
        return all(_holds(node, data) for node in self.nodes)


# --- validating -----------------------------------------------------------------------------


def compile_filter(spec: Any) -> Filter:
    """Validate a filter and return it ready to match.

    Raises:
        FilterError: the filter is not an object, is too large or too deep, or has an
            unknown operator, a bad path or a bad operand (the message says which).
    """
    if not isinstance(spec, dict):
        raise FilterError('A filter is a JSON object, e.g. {"outlet": "Main"}.')
    _check_depth(spec, 1)  # first: serialising a very deep value would recurse too far
    try:
        text = json.dumps(spec, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise FilterError("A filter must be plain JSON (no NaN or Infinity).") from None
    if len(text.encode()) > MAX_FILTER_BYTES:
        raise FilterError(f"A filter may be at most {MAX_FILTER_BYTES} bytes of JSON.")
    return _compiled(text)


@lru_cache(maxsize=1024)
def _compiled(text: str) -> Filter:
    # Cached by the filter's JSON: emit applies the same few filters to every event.
    counter = [0]
    return _parse_object(json.loads(text), (), counter)


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(f"A filter may be nested at most {MAX_DEPTH} levels deep.")
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        for child in children:
            _check_depth(child, depth + 1)


def _parse_object(obj: dict[str, Any], prefix: tuple[str, ...], counter: list[int]) -> Filter:
    nodes: list[Condition | Logical] = []
    for key, value in obj.items():
        if key in LOGICAL:
            nodes.append(_parse_logical(key, value, prefix, counter))
        elif key.startswith("$") and key != WILDCARD and not key.startswith("$."):
            where = f" at {_show(prefix)}" if prefix else ""
            if key in COMPARISONS:
                raise FilterError(
                    f'"{key}"{where} must follow a field name, e.g. {{"total": {{"{key}": ...}}}}.'
                )
            raise FilterError(f'Unknown operator "{key}"{where}. {_OPERATORS_HINT}')
        else:
            path = prefix + _parse_path(key, prefix)
            nodes.extend(_parse_field(path, value, counter))
    return Filter(tuple(nodes))


_OPERATORS_HINT = "Operators: " + " ".join(COMPARISONS + LOGICAL) + "."


def _parse_logical(op: str, value: Any, prefix: tuple[str, ...], counter: list[int]) -> Logical:
    where = f" at {_show(prefix)}" if prefix else ""
    if not isinstance(value, list) or not value:
        raise FilterError(f'"{op}"{where} needs a non-empty list of filters.')
    if len(value) > MAX_LIST_ITEMS:
        raise FilterError(f'"{op}"{where} may hold at most {MAX_LIST_ITEMS} filters.')
    parts = []
    for item in value:
        if not isinstance(item, dict) or not item:
            raise FilterError(f'Each filter in "{op}"{where} must be a non-empty JSON object.')
        parts.append(_parse_object(item, prefix, counter))
    return Logical(op, tuple(parts))


def _parse_path(key: str, prefix: tuple[str, ...]) -> tuple[str, ...]:
    segments = tuple(key.split("."))
    full = prefix + segments
    shown = _show(full)
    if not key or any(not s for s in segments):
        raise FilterError(f"Bad field path {shown}: empty name between dots.")
    if len(".".join(full)) > MAX_PATH_LENGTH or len(full) > MAX_PATH_SEGMENTS:
        raise FilterError(
            f"Field path {shown} is too long (at most {MAX_PATH_LENGTH} characters and "
            f"{MAX_PATH_SEGMENTS} names)."
        )
    for segment in segments:
        if segment.startswith("$") and segment != WILDCARD:
            raise FilterError(
                f'Bad field path {shown}: "{segment}" is not a field name; '
                f'use "$" alone for any element of an array.'
            )
    if full[-1] == WILDCARD:
        raise FilterError(
            f'Bad field path {shown}: "$" cannot end a path (as in Convoy); a plain value '
            "already matches any element of an array field."
        )
    if full.count(WILDCARD) > MAX_WILDCARDS:
        raise FilterError(f'Field path {shown} has more than {MAX_WILDCARDS} "$" wildcards.')
    return segments


def _parse_field(
    path: tuple[str, ...], value: Any, counter: list[int]
) -> list[Condition | Logical]:
    if not isinstance(value, dict):
        return [_condition(path, _EQUAL, value, counter)]
    if not value:
        raise FilterError(
            f'Empty object at {_show(path)}: give a value, operators, or {{"$eq": {{}}}}.'
        )
    operators = [k for k in value if k.startswith("$") and k != WILDCARD]
    comparisons = [k for k in operators if k in COMPARISONS]
    if not comparisons:
        return list(_parse_object(value, path, counter).nodes)  # nested field names
    names = [k for k in value if k not in COMPARISONS]
    if names:
        bad = names[0]
        if bad.startswith("$") and bad != WILDCARD and bad not in LOGICAL:
            raise FilterError(f'Unknown operator "{bad}" at {_show(path)}. {_OPERATORS_HINT}')
        raise FilterError(
            f'At {_show(path)}, "{bad}" sits beside operators ({", ".join(comparisons)}): '
            f"put field names and operators in separate objects."
        )
    return [_condition(path, op, operand, counter) for op, operand in value.items()]


def _condition(path: tuple[str, ...], op: str, operand: Any, counter: list[int]) -> Condition:
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise FilterError(f"A filter may hold at most {MAX_CONDITIONS} conditions.")
    shown = _show(path)
    if op in ("$gt", "$gte", "$lt", "$lte") and not _is_number(operand):
        raise FilterError(f'"{op}" at {shown} needs a number, got {_brief(operand)}.')
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(f'"{op}" at {shown} needs a list, got {_brief(operand)}.')
        if len(operand) > MAX_LIST_ITEMS:
            raise FilterError(f'"{op}" at {shown} may list at most {MAX_LIST_ITEMS} values.')
    if op == "$exist" and not isinstance(operand, bool):
        raise FilterError(f'"$exist" at {shown} needs true or false, got {_brief(operand)}.')
    pattern = None
    if op == "$regex":
        pattern = _compile_regex(operand, shown)
    return Condition(path, op, operand, pattern)


def _compile_regex(operand: Any, shown: str) -> Any:
    if not isinstance(operand, str) or not operand:
        raise FilterError(f'"$regex" at {shown} needs a pattern string, got {_brief(operand)}.')
    if len(operand) > MAX_REGEX_LENGTH:
        raise FilterError(f'"$regex" at {shown} may be at most {MAX_REGEX_LENGTH} characters long.')
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False
    try:
        return re2.compile(operand, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise FilterError(
            f'"$regex" at {shown} is not a pattern we can run ({reason}); RE2 syntax, '
            "without backreferences or lookarounds."
        ) from None


def _show(path: tuple[str, ...]) -> str:
    return '"' + ".".join(path) + '"'


def _brief(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- matching -------------------------------------------------------------------------------


def matches(spec: Any, data: Any) -> bool:
    """True when the event data passes the filter (an empty or None filter passes all).

    Raises:
        FilterError: the filter itself is invalid (filters are validated on save, so this
            means one was stored by other means).
    """
    if not spec:
        return True
    return compile_filter(spec).matches(data)


def _holds(node: Condition | Logical, data: Any) -> bool:
    if isinstance(node, Logical):
        results = (part.matches(data) for part in node.parts)
        return any(results) if node.op == "$or" else all(results)
    found = _resolve(data, node.path)
    if not found:
        return node.op in ("$neq", "$nin") or (node.op == "$exist" and node.operand is False)
    if node.op == "$exist":
        return node.operand is True
    # With `$` wildcards a path reaches several values; one that passes is enough (Convoy).
    return any(_test(node, value) for value in found)


def _resolve(data: Any, path: tuple[str, ...]) -> list[Any]:
    """The values at a path; several with `$` wildcards, none when it leads nowhere."""
    current = [data]
    for segment in path:
        following: list[Any] = []
        for value in current:
            if isinstance(value, dict):
                if segment in value:
                    following.append(value[segment])
            elif isinstance(value, list):
                if segment == WILDCARD:
                    following.extend(value)
                elif segment.isdigit() and int(segment) < len(value):
                    following.append(value[int(segment)])
        current = following
        if not current:
            break
    return current


def _test(node: Condition, value: Any) -> bool:
    op, operand = node.op, node.operand
    if op == _EQUAL:
        if isinstance(value, list) and not isinstance(operand, list):
            return any(_equal(item, operand) for item in value)
        return _equal(value, operand)
    if op == "$eq":
        return _equal(value, operand)
    if op == "$neq":
        return not _equal(value, operand)
    if op in ("$in", "$nin"):
        items = value if isinstance(value, list) else [value]
        found = any(_equal(item, choice) for item in items for choice in operand)
        return found if op == "$in" else not found
    if op == "$regex":
        return isinstance(value, str) and node.pattern.search(value) is not None
    if not _is_number(value):
        return False  # $gt $gte $lt $lte compare numbers only
    if op == "$gt":
        return value > operand
    if op == "$gte":
        return value >= operand
    if op == "$lt":
        return value < operand
    return value <= operand  # $lte


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
