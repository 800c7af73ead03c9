"""What the spec states of an address is what the service accepts (schema fuzzing
found requests valid by the spec that the service refused)."""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from hypothesis import given
from hypothesis import strategies as st

from apps.delivery.schemas import AddressCreateSchema


def spec_of_address() -> dict:
    spec = APISpec("t", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("AddressCreate", schema=AddressCreateSchema)
    return spec.to_dict()["components"]["schemas"]["AddressCreate"]["properties"]


PROPERTIES = spec_of_address()


def text(field: dict) -> st.SearchStrategy[str]:
    if "enum" in field:
        return st.sampled_from(field["enum"])
    return st.from_regex(field["pattern"], fullmatch=True).filter(
        lambda t: field["minLength"] <= len(t) <= field["maxLength"]
    )


@given(st.fixed_dictionaries({name: text(f) for name, f in PROPERTIES.items()}))
def test_every_address_valid_by_the_spec_is_accepted(body):
    loaded = AddressCreateSchema().load(body)
    assert loaded == {name: value.strip() for name, value in body.items()}


def test_phone_and_country_state_their_constraints():
    assert re.fullmatch(PROPERTIES["phone"]["pattern"], "+79161234567")
    assert not re.fullmatch(PROPERTIES["phone"]["pattern"], "89161234567")
    assert "RU" in PROPERTIES["country"]["enum"]
    assert "XX" not in PROPERTIES["country"]["enum"]
