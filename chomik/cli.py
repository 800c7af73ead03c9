"""The `chomik` command line: web, worker, db, dlq, outbox, check, infra, run."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from chomik import launcher, migrating
from chomik.apps import APPS, app_spec, load
from chomik.infra import InfraError, KafkaBroker, PostgresCluster, default_base_dir
from chomik.settings import EMBEDDED_KAFKA_PORT, EMBEDDED_PG_PORT

GUNICORN_CONF = launcher.PROJECT_DIR / "docker" / "gunicorn.conf.py"


def cmd_web(args: argparse.Namespace) -> int:
    """Serve one app under gunicorn (replaces this process)."""
    spec = app_spec(args.app)
    port = args.port or spec.port
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        str(Path(tempfile.gettempdir()) / f"chomik-prometheus-{spec.name}-{port}"),
    )
    argv = [
        sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
        "--bind", f"{args.host}:{port}", "--name", f"chomik-{spec.name}",
        f"{spec.web}()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one app's worker: consumers, outbox relay and jobs."""
    spec = app_spec(args.app)
    if spec.worker is None:
        raise SystemExit(f"{spec.name} has no worker")
    worker = load(spec.worker)()
    status = int(worker.run() or 0)
    if worker.stopped_cleanly:
        # Offsets committed, the group left, connections closed: leave without
        # tearing the interpreter down, a garbage collection over the whole heap
        # that takes seconds when every process of a machine stops at once.
        logging.shutdown()
        os._exit(status)
    return status


def _database_urls(names: Sequence[str]) -> dict[str, str]:
    pg_port = int(os.environ.get("EMBEDDED_PG_PORT", EMBEDDED_PG_PORT))
    urls = launcher.Launcher(os.environ, Path()).database_urls(pg_port)
    return {name: urls[name] for name in names}


def cmd_db(args: argparse.Namespace) -> int:
    """Migrate or check one database, or all of them."""
    names = migrating.DATABASES if args.name == "all" else (args.name,)
    for name, url in _database_urls(names).items():
        if args.action == "upgrade":
            migrating.upgrade(name, url, args.revision or "head")
        elif args.action == "downgrade":
            migrating.downgrade(name, url, args.revision or "base")
        else:
            migrating.check(name, url)
        print(f"{name}: {args.action} ok")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """List, show or replay the dead letters of a topic (`chomik.messaging.dlq`)."""
    # Imported here, not at the top: importing messaging declares the kit's metrics,
    # and `chomik web` must not create metric files before gunicorn prepares its
    # PROMETHEUS_MULTIPROC_DIR.
    from chomik.messaging import dlq

    servers = args.bootstrap_servers or dlq.bootstrap_servers_from(os.environ)
    try:
        letters = dlq.read_dead_letters(servers, args.topic)
        if args.action == "list":
            print(f"{len(letters)} dead letter(s) in {dlq.dlq(args.topic)}")
            for letter in letters:
                print(dlq.summary(letter))
        elif args.action == "show":
            (letter,) = dlq.select(letters, [args.ref])
            print(dlq.describe(letter))
        else:
            if args.all == bool(args.refs):
                raise dlq.DeadLetterError("name dead letters to replay, or --all")
            chosen = letters if args.all else dlq.select(letters, args.refs)
            dlq.replay(servers, chosen)
            for letter in chosen:
                print(f"replayed {letter.ref} to {letter.topic}")
    except dlq.DeadLetterError as exc:
        print(f"chomik dlq: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    """Send again every event the databases' outboxes sent since a moment."""
    # Imported here, like `dlq`: importing messaging declares the kit's metrics.
    from chomik.messaging.outbox import republish_all

    names = migrating.DATABASES if args.name == "all" else (args.name,)
    for name, count in republish_all(_database_urls(names), args.since).items():
        print(f"{name}: {count} event(s) to send again")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Audit every database (read-only) for the invariants between them; 1 if any fails."""
    # Imported here, like `dlq`: importing messaging declares the kit's metrics.
    import json

    import sqlalchemy as sa

    from chomik.check import Limits, audit

    limits = Limits(
        grace=args.grace,
        outbox_age=args.outbox_age,
        txcoord_timeout=args.txcoord_timeout,
        merchant_account_id=args.merchant_account,
    )
    kafka = None if args.no_dlq else args.bootstrap_servers or _kafka_servers()
    try:
        report = audit(_database_urls(migrating.DATABASES), limits=limits, kafka=kafka)
    except sa.exc.SQLAlchemyError as exc:
        print(f"chomik check: a database could not be read: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({
            "ok": report.ok,
            "checked": list(report.checked),
            "violations": [v.as_dict() for v in report.violations],
        }, indent=2))  # fmt: skip
    else:
        for violation in report.violations:
            print(violation.line())
        print(
            f"{len(report.checked)} invariants checked, "
            f"{len(report.violations)} violation(s)"
        )
    return 0 if report.ok else 1


def _kafka_servers() -> str:
    """The broker as the launcher finds it: KAFKA_BOOTSTRAP_SERVERS, else embedded."""
    port = int(os.environ.get("EMBEDDED_KAFKA_PORT", EMBEDDED_KAFKA_PORT))
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{port}"


def cmd_infra(args: argparse.Namespace) -> int:
    """Run only the embedded PostgreSQL and Kafka until stopped."""
    base = default_base_dir(launcher.PROJECT_DIR)
    cluster = PostgresCluster(base_dir=base / "pg", port=EMBEDDED_PG_PORT)
    broker = KafkaBroker(
        port=EMBEDDED_KAFKA_PORT,
        log_path=base / "logs" / "tansu.log",
        die_with_parent=True,
    )
    signal.signal(signal.SIGTERM, launcher._on_signal)
    signal.signal(signal.SIGINT, launcher._on_signal)
    try:
        cluster.start()
        broker.start()
        launcher.say(f"postgres {cluster.url()}\nkafka    {broker.bootstrap_servers}")
        while True:
            time.sleep(1)
    except launcher.Shutdown:
        return 0
    except InfraError as exc:
        launcher.say(f"chomik infra: {exc}")
        return 1
    finally:
        broker.stop()
        cluster.stop()


def cmd_run(_args: argparse.Namespace) -> int:
    """Start the whole system."""
    return launcher.run(os.environ)


def cmd_app_command(args: argparse.Namespace) -> int:
    """Run a command-line task of an app (loaded by name: the kit imports no app)."""
    code: int = load(args.target)(args.extra)
    return code


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    root = argparse.ArgumentParser(prog="chomik", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    web = sub.add_parser("web", help="serve one app under gunicorn")
    web.add_argument("app")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=0)
    web.set_defaults(func=cmd_web)
    worker = sub.add_parser("worker", help="run one app's worker")
    worker.add_argument("app")
    worker.set_defaults(func=cmd_worker)
    db = sub.add_parser("db", help="migrate or check databases")
    db.add_argument("action", choices=["upgrade", "downgrade", "check"])
    db.add_argument(
        "name", nargs="?", default="all", choices=["all", *migrating.DATABASES]
    )
    db.add_argument("revision", nargs="?")
    db.set_defaults(func=cmd_db)
    _add_dlq(sub)
    outbox = sub.add_parser(
        "outbox",
        help="send again the events sent since a moment (a broker lost them)",
        description="Make every event the outboxes sent in the last SECONDS pending "
        "again: the relays send them again, in order, and each consumer group skips "
        "those it applied. For a broker that lost what it held.",
    )
    outbox.add_argument("action", choices=["republish"])
    outbox.add_argument(
        "--since", type=_lookback, required=True, metavar="SECONDS",
        help="how far back (sent outbox rows are kept OUTBOX_RETENTION, a day); at "
        "most INBOX_RETENTION, past which a consumer no longer knows what it applied",
    )  # fmt: skip
    outbox.add_argument(
        "--database", dest="name", default="all",
        choices=["all", *migrating.DATABASES], help="one database (default: all)",
    )  # fmt: skip
    outbox.set_defaults(func=cmd_outbox)
    _add_check(sub)
    sub.add_parser("infra", help="run embedded PostgreSQL and Kafka").set_defaults(
        func=cmd_infra
    )
    sub.add_parser("run", help="start the whole system").set_defaults(func=cmd_run)
    for command in (c for spec in APPS for c in spec.commands):
        task = sub.add_parser(command.name, help=command.help, add_help=False)
        task.set_defaults(func=cmd_app_command, target=command.target)
    return root


def _add_dlq(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dead = sub.add_parser("dlq", help="list, show or replay dead letters")
    dead.set_defaults(func=cmd_dlq)
    actions = dead.add_subparsers(dest="action", required=True)
    servers = argparse.ArgumentParser(add_help=False)
    servers.add_argument(
        "--bootstrap-servers", help="Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS)"
    )
    servers.add_argument(
        "topic", help="the source topic (its dead letters: <topic>.dlq)"
    )
    actions.add_parser(
        "list", parents=[servers], help="one line per dead letter, with its error"
    )
    show = actions.add_parser("show", parents=[servers], help="one dead letter in full")
    show.add_argument("ref", metavar="PARTITION:OFFSET")
    replay = actions.add_parser(
        "replay", parents=[servers], help="publish dead letters to their topic again"
    )
    replay.add_argument("refs", nargs="*", metavar="PARTITION:OFFSET")
    replay.add_argument("--all", action="store_true", help="every dead letter")


def _lookback(text: str) -> float:
    """Seconds back to republish: above 0, at most what the consumers' inboxes keep."""
    limit = float(os.environ.get("INBOX_RETENTION") or 14 * 24 * 3600)
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= limit:  # nan too
        raise argparse.ArgumentTypeError(
            f"{text!r}: seconds above 0, at most INBOX_RETENTION ({limit:.0f})"
        )
    return seconds


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check",
        help="audit every database for the invariants between them (read-only)",
        description="Audit every database (read-only) and the dead-letter topics; "
        "print each violated invariant with the ids involved; exit 1 if any.",
    )
    check.set_defaults(func=cmd_check)
    check.add_argument(
        "--grace", type=float, default=120.0, metavar="SECONDS",
        help="how long two databases may disagree while a message or callback "
        "reconciling them is on its way (default 120)",
    )  # fmt: skip
    check.add_argument(
        "--outbox-age", type=float, default=60.0, metavar="SECONDS",
        help="how long an outbox row may wait to be published (default 60)",
    )  # fmt: skip
    check.add_argument(
        "--txcoord-timeout", type=float, metavar="SECONDS",
        default=float(os.environ.get("TXCOORD_TIMEOUT") or 60.0),
        help="how long a transaction may stay prepared (default TXCOORD_TIMEOUT, 60)",
    )  # fmt: skip
    check.add_argument(
        "--merchant-account", metavar="ID",
        default=os.environ.get("BANK_MERCHANT_ACCOUNT_ID") or None,
        help="the bank account payments are paid into (default "
        "BANK_MERCHANT_ACCOUNT_ID, else every account a payment was made to)",
    )  # fmt: skip
    check.add_argument(
        "--bootstrap-servers",
        help="Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS, else the embedded one)",
    )
    check.add_argument(
        "--no-dlq", action="store_true", help="leave the dead-letter topics out"
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `chomik` command."""
    root = parser()
    # An app's task parses its own arguments; every other command takes none extra.
    args, extra = root.parse_known_args(argv)
    if extra and args.func is not cmd_app_command:
        root.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
