#!/usr/bin/env bash
# Install what hotpath needs on this machine, skipping what is already there.
#
#   deploy/setup.sh            redis-server, a Python venv with hotpath and its dev tools
#   deploy/setup.sh --kafka    also a JDK, Maven and the Apache Kafka jars (for the tests)
#   deploy/setup.sh --bench    also Prometheus and Alertmanager (the page-latency benchmark
#                              drives the same incident through them)
#
# The venv is $HOTPATH_VENV (default: .venv in the repository); the Makefile uses it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kafka=0
bench=0
for arg in "$@"; do
    case "$arg" in
        --kafka) kafka=1 ;;
        --bench) bench=1 ;;
        *) echo "deploy/setup.sh: unknown option $arg (known: --kafka --bench)" >&2; exit 2 ;;
    esac
done
venv="${HOTPATH_VENV:-.venv}"

section() { printf '\n===== %s =====\n' "$*"; }
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)

section "system packages"
missing=()
command -v python3 >/dev/null || missing+=(python3)
# Debian moves ensurepip into python3-venv; without it `python3 -m venv` cannot make a venv.
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((kafka)); then
    command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
fi
if ((bench)); then
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
fi
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends ca-certificates "${missing[@]}"
else
    echo "all present"
fi
redis-server --version
if ((bench)) && [[ -d /run/systemd/system ]]; then
    # Debian starts both as services on install; the benchmark runs its own instances,
    # and idle ones would only take CPU from the measurements.
    "${sudo[@]}" systemctl disable --now prometheus prometheus-alertmanager 2>/dev/null || true
fi

section "python environment ($venv)"
# A venv, because Debian's system Python refuses pip installs (PEP 668).
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { echo "hotpath needs Python >= 3.11" >&2; exit 1; }
# Skip the resolver when nothing changed since the last install (a stamp per pyproject).
stamp="$venv/.hotpath-installed"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[dev,bench]'
    touch "$stamp"
fi
"$venv/bin/python" --version

if ((kafka)); then
    section "kafka jars (Maven Central)"
    java -version 2>&1
    deploy/kafka/fetch.sh
fi
