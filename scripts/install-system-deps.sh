#!/usr/bin/env bash
# Installs the Debian packages vitalmesh's tests and benchmarks use, when they are missing.
# Idempotent: a second run installs nothing. Needs root (or sudo) and Debian's apt.
set -euo pipefail

# command -> package that provides it
declare -A NEED=(
  [mosquitto_pub]=mosquitto-clients
  [mosquitto_sub]=mosquitto-clients
  [mosquitto]=mosquitto
  [chromium]=chromium
  [openssl]=openssl
  [redis-server]=redis-server
  [influxd]=influxdb
  [influx]=influxdb-client
  [victoria-metrics]=victoria-metrics
  [nats-server]=nats-server
  [strace]=strace
)

missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
# PostgreSQL 15 for cluster mode's shared state (its binaries are not on PATH: /usr/lib/postgresql/15/bin)
if ! dpkg -s postgresql-15 >/dev/null 2>&1; then
  missing+=(postgresql-15)
fi
# a CJK font, so that the console's zh-CN screenshots show Chinese text rather than empty boxes
if ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1 && ! { command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh | grep -q .; }; then
  missing+=(fonts-wqy-microhei)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "system packages: installing ${pkgs[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# the mosquitto package may start a system broker on 1883, which vitalmesh uses by default;
# tests and benchmarks start their own mosquitto on free ports
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
# likewise the redis-server package may start a system Redis on 6379; the cluster test starts its own
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
# influxdb and victoria-metrics may start system services on 8086/8428; tests start their own
# nats-server likewise (4222); the cluster tests start their own 3-node cluster
for svc in influxdb victoria-metrics nats-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
echo "system packages: done"
