#!/usr/bin/env bash
# Installs the real peers the test suite talks to, when they are missing:
# Postfix (smtp-sink, smtp-source, sendmail), dnsmasq, dig, swaks, openssl,
# PostgreSQL (server binaries, for machines without a running server),
# Python's aiosmtpd. Idempotent; quiet when everything is present.
set -euo pipefail

need_apt=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need_apt+=(postfix)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || need_apt+=(dnsutils)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
# swaks needs Net::SSLeay and IO::Socket::SSL for --tls (STARTTLS interop tests).
perl -MNet::SSLeay -MIO::Socket::SSL -e 1 >/dev/null 2>&1 || need_apt+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-peers: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string outbox-test.localdomain" | debconf-set-selections
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "install-peers: pip install aiosmtpd" >&2
  python3 -m pip install -q aiosmtpd >/dev/null
fi
