#!/usr/bin/env bash
# OpenSSH's sshd (and ssh-keygen): the SFTP deliverer tests start their own instance
# (tests/deliverers/peers.py); openssl makes the SMTP and HTTPS test certificates.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing Debian packages ${need[*]} (run as root or install them)" >&2
    exit 0
  fi
  echo "install-test-deps: apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Privilege separation directory sshd insists on (apt does not start the service here).
mkdir -p /run/sshd 2>/dev/null || true
