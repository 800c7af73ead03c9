#!/usr/bin/env bash
# Make sure the machine has PostgreSQL server binaries (initdb, pg_ctl) for the
# embedded cluster; install them from the system's package manager when we can.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || [ -n "${PG_BIN:-}" ]; then
  exit 0
fi
if [ -n "${CHOMIK_SKIP_SYSTEM_DEPS:-}" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing PostgreSQL server binaries (apt-get install postgresql)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  exit 0
fi
echo "PostgreSQL server binaries not found: install them (Debian: sudo apt-get install postgresql), set PG_BIN, or point the *_DATABASE_URL settings at a running server" >&2
exit 1
