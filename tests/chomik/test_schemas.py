"""The shared contract pieces: money as exact decimal strings, and pages of a list."""

import re
import unicodedata
from decimal import Decimal

import marshmallow as ma
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st

from chomik.schemas import (
    CONTROLS,
    LINE_PATTERN,
    MAX_MONEY,
    MONEY_PATTERN,
    Line,
    Money,
    PageArgsSchema,
    PageSchema,
    has_control,
)


class PriceSchema(ma.Schema):
    price = Money(required=True)


class BoundedSchema(ma.Schema):
    amount = Money(minimum=Decimal("0.01"), maximum=Decimal("100"))


class ItemSchema(ma.Schema):
    name = ma.fields.String()


class ItemPageSchema(PageSchema):
    items = ma.fields.List(ma.fields.Nested(ItemSchema))


@pytest.mark.parametrize(
    ("raw", "amount"),
    [("129.90", Decimal("129.90")), ("0", Decimal(0)), (5, Decimal(5)),
     ("9999999999.99", MAX_MONEY), ("0.1", Decimal("0.1"))],
)  # fmt: skip
def test_money_loads_exact_decimals(raw, amount):
    loaded = PriceSchema().load({"price": raw})["price"]
    assert loaded == amount
    assert isinstance(loaded, Decimal)


@pytest.mark.parametrize(
    "raw",
    [129.9, True, "1e3", " 1.00", "1,00", "NaN", "Infinity", "١٢", "1.001", "-1",
     "10000000000.00", None, [], "12345678901234"],
)  # fmt: skip
def test_money_refuses_floats_exponents_extra_places_and_out_of_range(raw):
    with pytest.raises(ma.ValidationError):
        PriceSchema().load({"price": raw})


def test_money_dumps_two_places_as_a_string():
    assert PriceSchema().dump({"price": Decimal("129.9")}) == {"price": "129.90"}
    assert PriceSchema().dump({"price": Decimal("5")}) == {"price": "5.00"}


def test_money_bounds_are_per_field():
    assert BoundedSchema().load({"amount": "100"}) == {"amount": Decimal(100)}
    with pytest.raises(ma.ValidationError, match="between 0.01 and 100"):
        BoundedSchema().load({"amount": "0"})
    with pytest.raises(ma.ValidationError):
        BoundedSchema().load({"amount": "100.01"})


def test_page_args_default_and_bounds():
    assert PageArgsSchema().load({}) == {"page": 1, "page_size": 20}
    assert PageArgsSchema().load({"page": "3", "page_size": "100"}) == {
        "page": 3,
        "page_size": 100,
    }
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 101}, {"page": "x"}):
        with pytest.raises(ma.ValidationError):
            PageArgsSchema().load(bad)


def test_page_schema_dumps_items_page_page_size_and_total():
    page = {"items": [{"name": "a"}], "page": 2, "page_size": 1, "total": 5}
    assert ItemPageSchema().dump(page) == page


@pytest.mark.parametrize("raw", ["-0", "-0.00", "-0.0"])
def test_negative_zero_is_not_an_amount(raw):
    with pytest.raises(ma.ValidationError) as refused:
        PriceSchema().load({"price": raw})
    assert "price" in refused.value.messages


class LineSchema(ma.Schema):
    title = Line(20, required=True)


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "\t\n", "a\u202eb", "a\u2066b", "a\u200bb", "a\u200db", "\ufeffa",
     "a\u061cb", "a\x00b", "a\x85b", "a\u2028b", "x" * 21],
)  # fmt: skip
def test_a_line_refuses_blank_control_bidi_and_zero_width_text(raw):
    with pytest.raises(ma.ValidationError):
        LineSchema().load({"title": raw})


def test_a_line_is_trimmed_and_keeps_letters_of_any_script():
    assert LineSchema().load({"title": "  Кроссовки é 靴 "}) == {
        "title": "Кроссовки é 靴"
    }


def test_a_line_documents_that_it_refuses_empty_and_blank_text():
    # Found by schema fuzzing: "" was valid by the spec yet refused (422).
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    class Named(ma.Schema):
        name = Line(100, required=True)

    spec = APISpec("t", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("Named", schema=Named)
    field = spec.to_dict()["components"]["schemas"]["Named"]["properties"]["name"]
    assert (field["minLength"], field["maxLength"], field["pattern"]) == (
        1,
        100,
        LINE_PATTERN,
    )
    with pytest.raises(ma.ValidationError):
        Named().load({"name": "   "})


def test_the_control_class_is_exactly_the_control_categories():
    categories = {"Cc", "Cf", "Zl", "Zp"}  # and Cs, checked apart (not in a pattern)
    in_class = re.compile(f"[{CONTROLS}]")
    wrong = [
        hex(code)
        for code in range(0x10000)
        if (unicodedata.category(chr(code)) in categories)
        != bool(in_class.match(chr(code)))
    ]
    assert not wrong, f"Unicode {unicodedata.unidata_version}: {wrong[:20]}"
    assert has_control("a\ud800b")
    assert not has_control("\U0001f3f4\U000e0067\U000e0062\U000e007f")  # a flag


def test_schemathesis_generates_from_the_line_pattern_only_lines_we_accept():
    # A pattern its engine cannot take fails generation (or, unchecked, is dropped).
    title = {"type": "string", "minLength": 1, "maxLength": 20, "pattern": LINE_PATTERN}
    body = {"type": "object", "required": ["title"], "properties": {"title": title}}
    raw = {
        "openapi": "3.0.3",
        "info": {"title": "lines", "version": "1"},
        "paths": {
            "/lines": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {"201": {"description": "stored"}},
                }
            }
        },
    }
    (result,) = schemathesis.openapi.from_dict(raw).get_all_operations()

    @settings(max_examples=50, database=None, deadline=None)
    @given(case=result.ok().as_strategy())
    def check(case):
        text = case.body["title"]
        assert LineSchema().load({"title": text}) == {"title": text.strip()}

    check()


# What the spec states is what the service accepts (schema fuzzing found the gaps).
@given(st.from_regex(LINE_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 20))
def test_every_line_valid_by_the_spec_is_accepted(text):
    assert LineSchema().load({"title": text}) == {"title": text.strip()}


@given(st.from_regex(MONEY_PATTERN, fullmatch=True))
def test_every_amount_valid_by_the_spec_is_accepted(text):
    assert PriceSchema().load({"price": text}) == {"price": Decimal(text)}
