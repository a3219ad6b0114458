"""The payload filter matcher (lib/filters.py): Convoy's operators, paths, arrays and bounds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lib import filters
from lib.filters import FilterError, compile_filter, matches

RECEIPT = {
    "outlet": "Main",
    "total": 125000,
    "discount": 0.5,
    "paid": True,
    "note": None,
    "customer": {"tier": "gold", "id": "C-9", "tags": ["vip", "new"]},
    "items": [
        {"sku": "SKU-1", "qty": 2, "lines": [{"code": "A"}]},
        {"sku": "SKU-22", "qty": 1, "lines": [{"code": "B"}, {"code": "C"}]},
    ],
    "tags": ["vip", "wholesale"],
    "codes": [1, 2, 3],
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # plain values: equality
        ({"outlet": "Main"}, True),
        ({"outlet": "Airport"}, False),
        ({"outlet": "main"}, False),
        ({"total": 125000.0}, True),
        ({"paid": True}, True),
        ({"paid": 1}, False),  # JSON true is not the number 1
        ({"total": "125000"}, False),  # nor is a string a number
        ({"note": None}, True),
        # several keys: all must hold
        ({"outlet": "Main", "total": 125000}, True),
        ({"outlet": "Main", "total": 1}, False),
        # $eq / $neq
        ({"outlet": {"$eq": "Main"}}, True),
        ({"outlet": {"$neq": "Main"}}, False),
        ({"outlet": {"$neq": "Airport"}}, True),
        ({"customer": {"$eq": {"tier": "gold", "id": "C-9", "tags": ["vip", "new"]}}}, True),
        ({"tags": {"$eq": ["vip", "wholesale"]}}, True),
        ({"tags": {"$eq": "vip"}}, False),  # $eq is deep equality, not membership
        # $gt $gte $lt $lte: numbers only
        ({"total": {"$gte": 100000}}, True),
        ({"total": {"$gte": 125000}}, True),
        ({"total": {"$gt": 125000}}, False),
        ({"total": {"$lt": 125000.5}}, True),
        ({"total": {"$lte": 124999}}, False),
        ({"discount": {"$gt": 0.25, "$lt": 1}}, True),
        ({"outlet": {"$gt": 1}}, False),  # a string is not compared with a number
        ({"paid": {"$gte": 0}}, False),  # nor is a boolean
        # $in / $nin
        ({"outlet": {"$in": ["Main", "Airport"]}}, True),
        ({"outlet": {"$in": ["Airport"]}}, False),
        ({"outlet": {"$nin": ["Airport"]}}, True),
        ({"outlet": {"$nin": ["Main"]}}, False),
        ({"total": {"$in": [125000.0]}}, True),
        ({"tags": {"$in": ["wholesale", "staff"]}}, True),  # array field: any element
        ({"tags": {"$nin": ["staff"]}}, True),
        ({"tags": {"$nin": ["vip"]}}, False),
        # $exist
        ({"note": {"$exist": True}}, True),  # null counts as present
        ({"missing": {"$exist": True}}, False),
        ({"missing": {"$exist": False}}, True),
        ({"outlet": {"$exist": False}}, False),
        # $regex (RE2, a search anywhere in the string)
        ({"items.0.sku": {"$regex": "^SKU-[0-9]+$"}}, True),
        ({"outlet": {"$regex": "ai"}}, True),
        ({"outlet": {"$regex": "^ai"}}, False),
        ({"total": {"$regex": "1"}}, False),  # only strings match a pattern
        # a missing field fails all but $exist false, $neq and $nin
        ({"missing": "x"}, False),
        ({"missing": {"$gt": 0}}, False),
        ({"missing": {"$in": ["x"]}}, False),
        ({"missing": {"$regex": "."}}, False),
        ({"missing": {"$neq": "x"}}, True),
        ({"missing": {"$nin": ["x"]}}, True),
        # dotted paths and the same as nested objects
        ({"customer.tier": "gold"}, True),
        ({"customer": {"tier": "gold"}}, True),
        ({"customer": {"tier": {"$in": ["gold", "platinum"]}}}, True),
        ({"customer.tier.deeper": "gold"}, False),
        ({"customer": {"tier": "silver"}}, False),
        # arrays as Convoy matches them
        ({"tags": "vip"}, True),  # a plain value against an array field: membership
        ({"tags": "staff"}, False),
        ({"customer.tags": "new"}, True),
        ({"codes": 2}, True),
        ({"items.1.sku": "SKU-22"}, True),  # an index
        ({"items.5.sku": "SKU-22"}, False),
        ({"items.$.sku": "SKU-22"}, True),  # `$`: any element
        ({"items.$.sku": "SKU-3"}, False),
        ({"items.$.qty": {"$gte": 2}}, True),
        ({"items.$.qty": {"$gt": 2}}, False),
        ({"items.$.lines.$.code": "C"}, True),  # two wildcards
        ({"items.$.lines.$.code": "D"}, False),
        ({"items.sku": "SKU-1"}, False),  # no implicit traversal: Convoy needs `$` or an index
        ({"items.$.sku": {"$exist": True}}, True),
        ({"items.$.price": {"$exist": False}}, True),
        # $or / $and, at the top and inside a field
        ({"$or": [{"outlet": "Airport"}, {"total": {"$gte": 100000}}]}, True),
        ({"$or": [{"outlet": "Airport"}, {"total": {"$lt": 10}}]}, False),
        ({"$and": [{"outlet": "Main"}, {"customer.tier": "gold"}]}, True),
        ({"$and": [{"outlet": "Main"}, {"customer.tier": "silver"}]}, False),
        ({"outlet": "Main", "$or": [{"paid": False}, {"discount": 0.5}]}, True),
        ({"customer": {"$or": [{"tier": "silver"}, {"id": "C-9"}]}}, True),
        (
            {"$or": [{"$and": [{"outlet": "Main"}, {"paid": False}]}, {"tags": "wholesale"}]},
            True,
        ),
        # the empty filter matches everything
        ({}, True),
    ],
)
def test_it_matches_like_convoy(spec: dict[str, Any], expected: bool) -> None:
    assert matches(spec, RECEIPT) is expected


def test_it_matches_convoys_own_array_examples() -> None:
    # Each `$` condition is met by any element, not necessarily the same one (Convoy).
    data = {"data": [{"event": "meetup"}, {"venue": "test"}], "swag": "hoodies"}
    assert matches({"data.$.event": "meetup", "data.$.venue": "test"}, data) is True
    nested = {"data": [{"speakers": [{"name": "raymond"}, {"name": "subomi"}]}], "swag": "x"}
    assert matches({"data.$.speakers.$.name": "raymond", "swag": "x"}, nested) is True
    # A root-level array: the path starts with `$`.
    root = [{"event": "meetup"}, {"venues": [{"lagos": ["ikeja", "lekki"]}]}]
    assert matches({"$.venues.$.lagos": "ikeja"}, root) is True
    assert matches({"$.venues.$.lagos": "bariga"}, root) is False


def test_it_matches_data_that_is_not_an_object() -> None:
    assert matches({"outlet": "Main"}, ["Main"]) is False
    assert matches({"outlet": {"$exist": False}}, "text") is True
    assert matches(None, {"anything": 1}) is True


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"outlet": "Main"}], "A filter is a JSON object"),
        ("outlet=Main", "A filter is a JSON object"),
        ({"total": {"$gtt": 5}}, 'Unknown operator "$gtt" at "total"'),
        ({"$nor": [{"a": 1}]}, 'Unknown operator "$nor"'),
        ({"$gt": 5}, '"$gt" must follow a field name'),
        ({"total": {"$gte": "100"}}, '"$gte" at "total" needs a number'),
        ({"total": {"$lt": True}}, '"$lt" at "total" needs a number'),
        ({"outlet": {"$in": "Main"}}, '"$in" at "outlet" needs a list'),
        ({"outlet": {"$nin": {"a": 1}}}, '"$nin" at "outlet" needs a list'),
        ({"note": {"$exist": "yes"}}, '"$exist" at "note" needs true or false'),
        ({"code": {"$regex": 5}}, '"$regex" at "code" needs a pattern string'),
        ({"code": {"$regex": "("}}, '"$regex" at "code" is not a pattern we can run'),
        ({"code": {"$regex": r"(a)\1"}}, "without backreferences"),
        ({"code": {"$regex": "a(?=b)"}}, '"$regex" at "code" is not a pattern we can run'),
        ({"$or": {"a": 1}}, '"$or" needs a non-empty list of filters'),
        ({"$and": []}, '"$and" needs a non-empty list of filters'),
        ({"$or": ["a"]}, 'Each filter in "$or" must be a non-empty JSON object'),
        ({"customer": {"$or": [1]}}, 'Each filter in "$or" at "customer"'),
        ({"a..b": 1}, 'Bad field path "a..b"'),
        ({"": 1}, "Bad field path"),
        ({"a.$gt": 1}, 'Bad field path "a.$gt"'),
        ({"customer": {}}, 'Empty object at "customer"'),
        ({"total": {"$gt": 1, "currency": "USD"}}, 'At "total", "currency" sits beside'),
        ({"total": {"$gt": 1, "$bogus": 2}}, 'Unknown operator "$bogus" at "total"'),
        ({"a.$.b.$.c.$.d.$.e": 1}, 'more than 3 "$" wildcards'),
        ({"items.$.sku.$": "A"}, 'Bad field path "items.$.sku.$": "$" cannot end a path'),
        ({"customer": {"tags": {"$": "vip"}}}, '"$" cannot end a path'),
        ({"x" * 300: 1}, "is too long"),
        ({".".join(["a"] * 20): 1}, "is too long"),
        ({"total": {"$gt": float("nan")}}, "plain JSON"),
    ],
)
def test_it_refuses_bad_filters_naming_the_operator_or_path(spec: Any, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(spec)
    assert message in str(info.value)


def test_it_bounds_the_size_of_a_filter() -> None:
    big = {"outlet": {"$in": ["x" * 90] * 95}}
    with pytest.raises(FilterError, match="at most 8192 bytes"):
        compile_filter(big)


def test_it_bounds_the_depth_of_a_filter() -> None:
    spec: dict[str, Any] = {"leaf": 1}
    for _ in range(filters.MAX_DEPTH + 1):
        spec = {"a": spec}
    with pytest.raises(FilterError, match="nested at most 10 levels"):
        compile_filter(spec)
    very_deep: Any = 1
    for _ in range(5000):  # deeper than json.dumps could serialise
        very_deep = [very_deep]
    with pytest.raises(FilterError, match="nested at most"):
        compile_filter({"a": {"$eq": very_deep}})


def test_it_bounds_the_number_of_conditions_and_list_sizes() -> None:
    many = {f"f{n}": n for n in range(filters.MAX_CONDITIONS + 1)}
    with pytest.raises(FilterError, match="at most 50 conditions"):
        compile_filter(many)
    with pytest.raises(FilterError, match='"\\$in" at "a" may list at most 100 values'):
        compile_filter({"a": {"$in": list(range(101))}})
    with pytest.raises(FilterError, match='"\\$or" may hold at most 100 filters'):
        compile_filter({"$or": [{"a": n} for n in range(101)]})


def test_it_bounds_the_length_of_a_regex() -> None:
    with pytest.raises(FilterError, match='"\\$regex" at "code" may be at most 256 characters'):
        compile_filter({"code": {"$regex": "a" * 257}})
    compile_filter({"code": {"$regex": "a" * 256}})


def test_it_runs_a_catastrophic_pattern_in_linear_time() -> None:
    # `(a+)+$` takes Python's backtracking `re` exponential time on "aaa...b" (30 a's: minutes);
    # RE2 answers at once, so no pattern a merchant saves can stall a worker or the web.
    spec = {"code": {"$regex": "^(a+)+$"}, "name": {"$regex": "(x|x)*y"}}
    data = {"code": "a" * 50_000 + "b", "name": "x" * 50_000}
    # With a backtracking engine this test would hang until pytest-timeout stops it.
    assert matches(spec, data) is False
    assert matches({"code": {"$regex": "^(a+)+b$"}}, data) is True


def test_it_keeps_the_filter_it_compiled_from_json_order() -> None:
    a = compile_filter({"outlet": "Main", "total": {"$gte": 1}})
    b = compile_filter(json.loads('{"total": {"$gte": 1}, "outlet": "Main"}'))
    assert a is b  # cached by its JSON: emit compiles each stored filter once
