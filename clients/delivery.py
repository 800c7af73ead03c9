"""The typed client of the delivery service: the internal address check for orders.

`address_belongs_to` asks delivery whether an address is one of a buyer's, over
`GET /api/v1/internal/addresses/{id}?buyer_id=` under a service token: 200 means
yes, 404 (unknown, deleted or another buyer's) means no. Errors are those of
`clients._http`.
"""

from __future__ import annotations

import time
import uuid

import requests

from chomik.auth import issue_service_token
from clients._http import HttpClient, NotFoundError

__all__ = ["DeliveryClient"]


class DeliveryClient:
    """Calls the delivery service's internal endpoints under a service token."""

    TOKEN_TTL = 300

    def __init__(
        self,
        base_url: str,
        *,
        service_secret: str,
        caller: str,
        timeout: float = 5.0,
        retries: int = 2,
        session: requests.Session | None = None,
    ) -> None:
        self._secret = service_secret
        self._caller = caller
        self._token = ("", 0.0)
        self.http = HttpClient(
            base_url,
            timeout=timeout,
            retries=retries,
            session=session,
            token=self._service_token,
        )

    def _service_token(self) -> str:
        token, expires = self._token
        if time.monotonic() > expires:
            token = issue_service_token(self._secret, self._caller, ttl=self.TOKEN_TTL)
            self._token = (token, time.monotonic() + self.TOKEN_TTL / 2)
        return token

    def address_belongs_to(self, buyer_id: uuid.UUID, address_id: uuid.UUID) -> bool:
        """Tell whether the address exists and is the buyer's."""
        try:
            self.http.request(
                "GET",
                f"/api/v1/internal/addresses/{address_id}",
                params={"buyer_id": str(buyer_id)},
            )
        except NotFoundError:
            return False
        return True

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()
