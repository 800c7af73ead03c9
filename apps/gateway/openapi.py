"""One OpenAPI document: the gateway's own merged with each service's public paths.

Service documents are fetched from `<service>/openapi.json` and cached for a short
time; a service that does not answer is left out (and asked again next time), so
a restarted service shows up again on its own.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
COMPONENT_SECTIONS = (
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "securitySchemes",
)


class ServiceDocuments:
    """Fetch and cache each service's OpenAPI document."""

    def __init__(
        self, upstreams: Mapping[str, str], *, ttl: float, timeout: float
    ) -> None:
        self.session = requests.Session()
        self.session.trust_env = False  # the services' addresses are the settings'
        self.upstreams = dict(upstreams)
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, service: str) -> dict[str, Any] | None:
        """The service's document, from cache when fresh; None when it is down."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(service)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        url = f"{self.upstreams[service].rstrip('/')}/openapi.json"
        try:
            response = self.session.get(url, timeout=self.timeout)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("OpenAPI of %s left out: %s", service, exc)
            with self._lock:
                self._cache.pop(service, None)
            return None
        with self._lock:
            self._cache[service] = (now, document)
        return document

    def all(self) -> dict[str, dict[str, Any]]:
        """Every reachable service's document, by service name."""
        found = {name: self.get(name) for name in self.upstreams}
        return {name: doc for name, doc in found.items() if doc is not None}


def merge(
    own: Mapping[str, Any],
    services: Mapping[str, Mapping[str, Any]],
    owner_of: Callable[[str], str | None],
) -> dict[str, Any]:
    """The gateway's document plus every path a service owns through the proxy."""
    merged = copy.deepcopy(dict(own))
    paths = merged.setdefault("paths", {})
    components = merged.setdefault("components", {})
    tags = merged.setdefault("tags", [])
    for service, document in services.items():
        public = {
            path: item
            for path, item in (document.get("paths") or {}).items()
            if path.startswith(API_PREFIX)
            and owner_of(path[len(API_PREFIX) :]) == service
        }
        if not public:
            continue
        doc = _renamed_components(service, _only(document, public), components)
        for path in public:
            paths[path] = doc["paths"][path]
        for section, entries in (doc.get("components") or {}).items():
            components.setdefault(section, {}).update(entries)
        known = {tag.get("name") for tag in tags}
        tags.extend(t for t in doc.get("tags") or [] if t.get("name") not in known)
    return merged


def _only(document: Mapping[str, Any], paths: Mapping[str, Any]) -> dict[str, Any]:
    """The document cut down to `paths`, the components they reach, their tags.

    Internal routes' schemas and tags would otherwise show in the public
    document and in Swagger UI, though their paths are left out.
    """
    components = document.get("components") or {}
    reached: set[str] = set()
    pending = list(_refs(paths))
    while pending:
        ref = pending.pop()
        if ref in reached or not ref.startswith("#/components/"):
            continue
        reached.add(ref)
        section, name = ref.split("/")[2:4]
        pending.extend(_refs((components.get(section) or {}).get(name)))
    used_tags = {
        tag
        for item in paths.values()
        for operation in (item or {}).values()
        if isinstance(operation, dict)
        for tag in operation.get("tags") or []
    }
    kept_components = {
        section: {
            name: value
            for name, value in (entries or {}).items()
            if section == "securitySchemes"
            or f"#/components/{section}/{name}" in reached
        }
        for section, entries in components.items()
    }
    return {
        **document,
        "paths": dict(paths),
        "components": kept_components,
        "tags": [t for t in document.get("tags") or [] if t.get("name") in used_tags],
    }


def _refs(node: Any) -> list[str]:
    """Every `$ref` below a node of a document."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _renamed_components(
    service: str, document: Mapping[str, Any], existing: Mapping[str, Any]
) -> dict[str, Any]:
    """The document with components that clash with existing ones renamed."""
    renames: dict[str, str] = {}
    components = document.get("components") or {}
    for section in COMPONENT_SECTIONS:
        for name, value in (components.get(section) or {}).items():
            mine = (existing.get(section) or {}).get(name)
            if mine is not None and mine != value:
                new = f"{service}.{name}"
                renames[f"#/components/{section}/{name}"] = (
                    f"#/components/{section}/{new}"
                )
    doc: dict[str, Any] = _rewrite_refs(copy.deepcopy(dict(document)), renames)
    for old, new in renames.items():
        section, name = old.split("/")[2], old.split("/")[3]
        entries = doc["components"][section]
        entries[new.split("/")[3]] = entries.pop(name)
    for section in COMPONENT_SECTIONS:
        entries = (doc.get("components") or {}).get(section) or {}
        for name in [
            n for n in entries if (existing.get(section) or {}).get(n) == entries[n]
        ]:
            del entries[name]
    return doc


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        return {
            key: renames.get(value, value)
            if key == "$ref"
            else _rewrite_refs(value, renames)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node
