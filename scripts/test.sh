#!/usr/bin/env bash
# The one test command (README): sets up what the tests need on a fresh Debian machine, then runs
# the type check, the linter and every test. Safe to run again: it installs only what is missing.
# Services (InfluxDB, Redis, Mosquitto) are started by the tests themselves, on free ports, and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

apt_updated=0
apt_install() {
  # $1: a command that must exist; the rest: Debian packages that provide it.
  local cmd=$1
  shift
  if command -v "$cmd" >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing $cmd: install the Debian packages $* (needs root), then run again" >&2
    exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    apt-get update -q
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

apt_install mosquitto_pub mosquitto-clients
apt_install docker-compose docker-compose
# The InfluxDB tests start their own influxd (scripts/influxd.ts) on free loopback ports.
apt_install influxd influxdb
# The scale-out tests start their own redis-server (scripts/redis-server.ts) the same way.
apt_install redis-server redis-server
# ... and put HAProxy, with the shipped config/haproxy/haproxy.cfg, in front of the instances.
apt_install haproxy haproxy
# The benchmark's smoke test runs Mosquitto beside the gateway as its baseline.
apt_install mosquitto mosquitto
# The dashboard's browser tests drive Debian's Chromium through playwright-core (never a download).
apt_install chromium chromium

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi

log "docker-compose config"
docker-compose -f docker-compose.yml config -q

log "type check"
npx tsc --noEmit

log "lint"
npx biome check .

log "tests"
mkdir -p .tmp
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest.json "$@" || status=$?
# One plain closing line, whatever the reporter above printed.
node -e '
  const r = JSON.parse(require("fs").readFileSync(".tmp/vitest.json", "utf8"))
  const skipped = r.numPendingTests + r.numTodoTests
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""))
' || true
exit "$status"
