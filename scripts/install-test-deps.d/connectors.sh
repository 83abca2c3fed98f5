#!/usr/bin/env bash
# Connector contract suite (tests/connectors/, ../shared/TESTING.md): ODBC drivers for the
# aioodbc path, and bqemulator in its OWN venv (it pins sqlglot < 30.12, which clashes with
# fakesnow in the project venv). Idempotent and quick when everything is already there.
# The Python-side fallbacks (nx-27017, fakesnow[server], mssql-python for Microsoft's ODBC
# Driver 18) come from the `test` extra; the drivers from the `all` extra.
set -euo pipefail

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need=()
for pkg in unixodbc unixodbc-dev odbc-postgresql odbc-mariadb libsqliteodbc; do
  pkg_installed "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "connectors: missing Debian packages ${need[*]} (run as root or install them)" >&2
  else
    echo "connectors: apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# bqemulator: REPORTHUB_BQEMULATOR_PYTHON points the tests at it (default below).
BQ_VENV=${REPORTHUB_BQEMULATOR_VENV:-/opt/reporthub-bqemulator}
if ! "$BQ_VENV/bin/python" -c "import bqemulator, numpy" >/dev/null 2>&1; then
  echo "connectors: creating the bqemulator venv in $BQ_VENV"
  python3 -m venv "$BQ_VENV"
  "$BQ_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$BQ_VENV/bin/python" -m pip install --quiet "bqemulator>=1.4,<2" numpy
fi
exit 0
