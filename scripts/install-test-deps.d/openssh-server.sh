#!/usr/bin/env bash
# OpenSSH's sshd: the SFTP deliverer tests start their own instance (tests/deliverers/peers.py).
set -euo pipefail
if [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: openssh-server missing (run as root or install it)" >&2
    exit 0
  fi
  echo "install-test-deps: apt-get install openssh-server"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
fi
# Privilege separation directory sshd insists on (apt does not start the service here).
mkdir -p /run/sshd 2>/dev/null || true
