"""Print the README's table of every environment variable, from the settings classes."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from chomik.apps import APPS
from chomik.settings import Settings, describe

# Variables read outside the settings classes (launcher, gunicorn config, tests).
EXTRA = [
    ("CHOMIK_DATA_DIR", ".chomik (or /tmp/chomik-… as root)",
     "where the launcher keeps its cluster, keys and logs", "launcher"),
    ("CHOMIK_HOST", "127.0.0.1", "loopback address every process of the launcher listens on "
     "and is reached at (127.0.0.2, …: a second system beside the first, with its own "
     "CHOMIK_DATA_DIR, EMBEDDED_PG_PORT and EMBEDDED_KAFKA_PORT: PostgreSQL and the broker "
     "listen on 127.0.0.1)", "launcher"),
    ("CHOMIK_READY_TIMEOUT", "90", "seconds `chomik run` waits for every process to be "
     "ready before it gives up", "launcher"),
    ("EMBEDDED_PG_PORT", "17432", "port of the embedded PostgreSQL", "launcher"),
    ("EMBEDDED_KAFKA_PORT", "17092", "port of the embedded Kafka broker", "launcher"),
    ("<NAME>_DATABASE_URL", "embedded cluster",
     "URL of database `chomik_<name>` (GATEWAY_, STORAGE_, … TXCOORD_); all set = "
     "no embedded PostgreSQL", "launcher, payment"),
    ("PG_BIN", "/usr/lib/postgresql/*/bin", "PostgreSQL server binaries", "launcher, tests"),
    ("PROMETHEUS_PORT", "17090", "port of the Prometheus `chomik run` starts (on CHOMIK_HOST)",
     "launcher"),
    ("PROMETHEUS_BIN", "prometheus on PATH", "the Prometheus binary `chomik run` starts "
     "(none: monitoring is off)", "launcher"),
    ("PROMETHEUS_SCRAPE_INTERVAL", "15s", "how often `chomik run`'s Prometheus scrapes "
     "and evaluates the rules", "launcher"),
    ("PROMETHEUS_MULTIPROC_DIR", "/tmp/chomik-prometheus-<app>-<port>",
     "gunicorn's shared metrics directory, emptied at start", "web"),
    ("WEB_CONCURRENCY", "2", "gunicorn worker processes", "web"),
    ("WEB_THREADS", "4", "threads per gunicorn worker", "web"),
    ("WEB_TIMEOUT", "30", "gunicorn worker timeout, seconds", "web"),
    ("WEB_GRACEFUL_TIMEOUT", "10", "seconds a stopping gunicorn worker may finish its requests (`chomik run`: 2)", "web"),
]  # fmt: skip


def settings_classes() -> list[type[Settings]]:
    for spec in APPS:
        importlib.import_module(spec.web.split(":")[0] + ".settings")
    seen: list[type[Settings]] = [Settings]
    todo = list(Settings.__subclasses__())
    while todo:
        klass = todo.pop(0)
        if klass not in seen:
            seen.append(klass)
            todo.extend(klass.__subclasses__())
    return seen


def table() -> str:
    rows = [(n, f"`{d}`" if d else "", doc, "all" if "chomik" in apps.split(", ") else apps)
            for n, d, doc, apps in describe(settings_classes())]  # fmt: skip
    rows += [(n, f"`{d}`", doc, who) for n, d, doc, who in EXTRA]
    lines = ["| variable | default | meaning | read by |", "|---|---|---|---|"]
    lines += [f"| `{n}` | {d} | {doc} | {who} |" for n, d, doc, who in rows]
    return "\n".join(lines)


def main() -> int:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    new = re.sub(
        r"(<!-- settings-table -->\n).*?(<!-- /settings-table -->)",
        lambda m: m.group(1) + table() + "\n" + m.group(2),
        text,
        flags=re.S,
    )
    if "--check" in sys.argv:
        return 0 if new == text else 1
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
