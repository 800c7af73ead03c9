#!/usr/bin/env bash
# Make sure the machine has PostgreSQL server binaries (initdb, pg_ctl) for the
# embedded cluster; install them from the system's package manager when we can.
set -euo pipefail
# Headless Chromium renders the gateway's API docs in its tests: install Debian's
# package when it is missing and we may (root with apt-get), else say so.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHOMIK_SKIP_SYSTEM_DEPS:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Chromium (apt-get install chromium)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium not found: the API docs test needs it (Debian: sudo apt-get install chromium)" >&2
  fi
fi
# The README's walk-through (and its test) speaks to the running system with curl and jq.
if { ! command -v curl >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; } && [ -z "${CHOMIK_SKIP_SYSTEM_DEPS:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing curl and jq (apt-get install curl jq)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl jq >/dev/null
  else
    echo "curl or jq not found: the README walk-through needs them (Debian: sudo apt-get install curl jq)" >&2
  fi
fi
# `chomik run` starts Prometheus with the alert rules when the binary exists, and
# the tests check the rules with promtool: Debian's prometheus package has both.
if ! command -v promtool >/dev/null 2>&1 && [ -z "${CHOMIK_SKIP_SYSTEM_DEPS:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Prometheus (apt-get install prometheus)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "prometheus not found: chomik run starts without it and the alert-rule tests are skipped (Debian: sudo apt-get install prometheus)" >&2
  fi
fi
# The deployment tests validate docker-compose.yml with docker-compose (no engine needed).
if ! command -v docker-compose >/dev/null 2>&1 && [ -z "${CHOMIK_SKIP_SYSTEM_DEPS:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing docker-compose (apt-get install docker-compose)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  else
    echo "docker-compose not found: the compose file is checked by parsing only (Debian: sudo apt-get install docker-compose)" >&2
  fi
fi
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
