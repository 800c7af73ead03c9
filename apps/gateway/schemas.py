"""Marshmallow schemas: the gateway's HTTP contract."""

from __future__ import annotations

import marshmallow as ma

from apps.gateway.passwords import MIN_PASSWORD_LENGTH


class AccountCreateSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=MIN_PASSWORD_LENGTH, max=256),
    )
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
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
