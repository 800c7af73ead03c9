"""Business metrics of the gateway: the accounts edge."""

from __future__ import annotations

from chomik.metrics import counter

LOGINS = counter(
    "gateway_logins",
    "Login attempts, by outcome (success, failure, throttled)",
    ["outcome"],
    known=("success", "failure", "throttled"),
)
TOKEN_REFRESHES = counter(
    "gateway_token_refreshes",
    "Refresh-token exchanges, by outcome (success, refused)",
    ["outcome"],
    known=("success", "refused"),
)
