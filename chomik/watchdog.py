"""Stops what `chomik run` started once the launcher is gone, however it ended.

The launcher starts this process first, in a session of its own, with a pipe on
its stdin whose other end only the launcher holds. The kernel closes that end
when the launcher exits, even by SIGKILL; then every process recorded in the
run directory is stopped, and the embedded PostgreSQL, which pg_ctl daemonizes
beyond the reach of a parent-death signal. After a clean stop the records are
gone already and there is nothing left to do.

Usage: python -m chomik.watchdog RUN_DIR
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from chomik.infra import RunRecords

READY = "watching"


def watch(run_dir: Path, stdin: int = 0) -> list[str]:
    """Wait until `stdin` reaches end of file, then stop what the records name."""
    while os.read(stdin, 4096):
        pass
    return RunRecords(run_dir).stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: announce readiness on stdout, watch, report on stderr."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    # Ctrl-C is for the launcher, which then stops everything and closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(READY, flush=True)
    stopped = watch(Path(args[0]))
    if stopped:
        print(f"stopped what the launcher left: {', '.join(stopped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
