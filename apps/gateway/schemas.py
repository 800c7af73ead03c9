"""Marshmallow schemas: the gateway's HTTP contract."""

from __future__ import annotations

import unicodedata
from typing import Any

import marshmallow as ma

from apps.gateway.passwords import MIN_PASSWORD_LENGTH
from apps.gateway.services import normalize_email
from chomik.schemas import Line, has_control

# Scripts written together in one language: Japanese mixes these on purpose.
_SAME_SCRIPT = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "KATAKANA-HIRAGANA": "CJK"}


def scripts(text: str) -> set[str]:
    """The scripts of a text's letters, named as Unicode names them (LATIN, ...)."""
    found = set()
    for char in text:
        if char.isalpha():
            script = unicodedata.name(char, "UNKNOWN").split(" ")[0]
            found.add(_SAME_SCRIPT.get(script, script))
    return found


class AccountEmail(ma.fields.Email):
    """An e-mail as stored (NFKC, lower case) whose local part uses one script,
    without control, bidi or zero-width characters anywhere.

    `seller\u0430@example.com` (a Cyrillic a) would otherwise be a second
    account that reads as `sellera@example.com`.
    """

    default_error_messages = {
        "mixed_scripts": "The part before @ mixes letters of several scripts.",
        "control": "Must not contain control, bidi or zero-width characters.",
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        email = normalize_email(value)
        if has_control(email):  # `exa\u200bmple.com` reads as `example.com`
            raise self.make_error("control")
        if len(scripts(email.rpartition("@")[0])) > 1:
            raise self.make_error("mixed_scripts")
        return str(super()._deserialize(email, attr, data, **kwargs))


class AccountCreateSchema(ma.Schema):
    email = AccountEmail(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=MIN_PASSWORD_LENGTH, max=256),
    )
    name = Line(100, required=True)
    role = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["buyer", "seller"])
    )


class AccountSchema(ma.Schema):
    id = ma.fields.String(required=True, metadata={"format": "uuid"})
    email = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    roles = ma.fields.List(ma.fields.String(), required=True)


class LoginSchema(ma.Schema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(max=256)
    )


class RefreshSchema(ma.Schema):
    refresh_token = ma.fields.String(
        required=True, validate=ma.validate.Length(min=1, max=4096)
    )


class LogoutSchema(ma.Schema):
    refresh_token = ma.fields.String(validate=ma.validate.Length(max=4096))


class TokenSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    refresh_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = ma.fields.Integer(
        required=True, metadata={"description": "seconds the access token is valid"}
    )


class JwkSchema(ma.Schema):
    kty = ma.fields.String()
    kid = ma.fields.String()
    use = ma.fields.String()
    alg = ma.fields.String()
    n = ma.fields.String()
    e = ma.fields.String()


class JwksSchema(ma.Schema):
    keys = ma.fields.List(ma.fields.Nested(JwkSchema), required=True)
