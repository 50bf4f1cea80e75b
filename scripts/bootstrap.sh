#!/usr/bin/env bash
# Installs everything maillage needs on a fresh Debian machine: system packages, a venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
[ -f /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so ] || [ -f /usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
if [ "${MAILLAGE_BROWSER_TESTS:-1}" = "1" ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
# Apache Kafka (KRaft) runs on Java 17; Maven fetches its jars from Maven Central.
if [ "${MAILLAGE_APACHE_KAFKA:-1}" = "1" ]; then
  command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
  command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  $PY -m venv .venv
fi
stamp=.venv/.maillage-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev,embedded]" -c constraints.txt
  touch "$stamp"
fi
# The Apache Kafka broker and its dependencies, from Maven Central (pinned pom in the package),
# into a per-user cache folder, once.
if [ "${MAILLAGE_APACHE_KAFKA:-1}" = "1" ]; then
  .venv/bin/python -c "from maillage.stack import apache_kafka as k; k.installed() or print('Apache Kafka', k.VERSION, 'installed in', k.install())"
fi
# `docker compose config` validates docker-compose.yml in the tests (no Docker engine needed). When
# the Docker client has no compose plugin, build it once from its Go module (a few minutes).
if [ "${MAILLAGE_COMPOSE_CHECK:-1}" = "1" ] && command -v docker >/dev/null 2>&1 \
    && ! docker compose version >/dev/null 2>&1; then
  if command -v go >/dev/null 2>&1; then
    echo "building the docker compose plugin (v2.32.4) from its Go module, once"
    GOBIN="$HOME/.cache/maillage/compose" go install github.com/docker/compose/v2/cmd@v2.32.4
    mkdir -p "$HOME/.docker/cli-plugins"
    cp "$HOME/.cache/maillage/compose/cmd" "$HOME/.docker/cli-plugins/docker-compose"
  else
    echo "warning: no Go toolchain to build the docker compose plugin; the compose test will fail" >&2
  fi
fi
