#!/usr/bin/env bash
# Installs the real peers the test suite talks to, when they are missing:
# Postfix (smtp-sink, smtp-source, sendmail), dnsmasq, dig, swaks, openssl,
# php-cli, git-email, mailutils, s-nail and cron (scripts/client-interop.sh),
# PostgreSQL (server binaries, for machines without a running server),
# Python's aiosmtpd, dkimpy and Perl's Mail::DKIM (DKIM verifiers), msmtp, curl and ab (apache2-utils, bench/http.sh). Idempotent; quiet when everything is present.
set -euo pipefail

need_apt=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need_apt+=(postfix)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || need_apt+=(dnsutils)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
# Real submission clients for the listener tests (crates/outbox/tests/listener_clients.rs).
command -v msmtp >/dev/null 2>&1 || need_apt+=(msmtp)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# swaks needs Net::SSLeay and IO::Socket::SSL for --tls (STARTTLS interop tests).
perl -MNet::SSLeay -MIO::Socket::SSL -e 1 >/dev/null 2>&1 || need_apt+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# curl is also run by the README example test (tests/http_limits.rs) and the secrets test;
# kill(1) by the signal tests.
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || need_apt+=(procps)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# Headless Chromium for the admin-page test (scripts/browser-test.sh); Debian's build,
# never `npx playwright install` (it downloads a browser of its own).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# The mail programs scripts/client-interop.sh drives through `outbox sendmail`.
command -v php >/dev/null 2>&1 || need_apt+=(php-cli)
[ -x /usr/lib/git-core/git-send-email ] || need_apt+=(git-email)
# git send-email's Mail::Address (only recommended by git-email, so not installed with it).
perl -MMail::Address -e 1 >/dev/null 2>&1 || need_apt+=(libmailtools-perl)
command -v mail.mailutils >/dev/null 2>&1 || need_apt+=(mailutils)
command -v s-nail >/dev/null 2>&1 || need_apt+=(s-nail)
[ -x /usr/sbin/cron ] || need_apt+=(cron)
# ab, the HTTP load generator of bench/http.sh.
command -v ab >/dev/null 2>&1 || need_apt+=(apache2-utils)

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

# dkimpy (with dnspython for DNS and PyNaCl for Ed25519) and Perl's Mail::DKIM: the two
# independent DKIM verifiers of the signing tests (crates/outbox/tests/dkim.rs).
if ! python3 -c 'import dkim, dns.resolver, nacl' >/dev/null 2>&1; then
  echo "install-peers: pip install dkimpy dnspython pynacl" >&2
  python3 -m pip install -q dkimpy dnspython pynacl >/dev/null
fi
if ! perl -MMail::DKIM::Verifier -e 1 >/dev/null 2>&1; then
  echo "install-peers: apt-get install libmail-dkim-perl" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends libmail-dkim-perl >/dev/null
fi

# standardwebhooks: the independent signature verifier of the webhook receiver in the
# tests (crates/outbox/tests/webhooks.rs).
if ! python3 -c 'import standardwebhooks' >/dev/null 2>&1; then
  echo "install-peers: pip install standardwebhooks" >&2
  python3 -m pip install -q standardwebhooks >/dev/null
fi

# schemathesis for scripts/schemathesis.sh (the HTTP API against its OpenAPI document).
if ! command -v schemathesis >/dev/null 2>&1; then
  echo "install-peers: pip install schemathesis" >&2
  python3 -m pip install -q schemathesis >/dev/null
  # Under pyenv a newly installed console script needs a shim before it is on PATH.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

# playwright-core (the browser driver only) for tests/browser.
if [ ! -d "$(dirname "$0")/../tests/browser/node_modules/playwright-core" ]; then
  echo "install-peers: npm install in tests/browser" >&2
  (cd "$(dirname "$0")/../tests/browser" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
