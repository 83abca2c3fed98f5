#!/usr/bin/env bash
# Debian packages and servers the test suite needs, installed and started if missing.
# Idempotent; does nothing that is already done. Needs root for apt (CI and dev machines run as root).
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# systemd-analyze: verifies systemd/reporthubd.service.
have systemd-analyze || need_apt+=(systemd)
# MariaDB and PostgreSQL servers and clients: the store and connector tests.
have mariadbd || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
have psql || need_apt+=(postgresql)
# Headless Chromium: the status page test loads the page and takes a screenshot.
have chromium || need_apt+=(chromium)
# promtool (Debian's prometheus package; apt does not start the server): tests/test_ops_kit.py
# checks and unit-tests the alerting rules in ops/prometheus/.
have promtool || need_apt+=(prometheus)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing Debian packages ${need_apt[*]} (run as root or install them)" >&2
  else
    echo "install-test-deps: apt-get install ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
fi

# Start the shared servers when they are down (TESTING.md).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 3306 && [ -x /usr/sbin/mariadbd ]; then
  echo "install-test-deps: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  for _ in $(seq 50); do port_open 3306 && break; sleep 0.2; done
fi
if ! port_open 5432 && ls /etc/postgresql >/dev/null 2>&1; then
  echo "install-test-deps: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 50); do port_open 5432 && break; sleep 0.2; done
fi

# Later additions (SFTP server, ODBC drivers, fallback servers) hook in here.
for extra in scripts/install-test-deps.d/*.sh; do
  [ -e "$extra" ] && bash "$extra"
done
exit 0
