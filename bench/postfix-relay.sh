#!/usr/bin/env bash
# A throwaway Postfix instance relaying everything to one host, for benchmarks. It never
# touches /etc/postfix or the system queue: configuration, queue and log live in DIR.
#
#   bench/postfix-relay.sh start DIR SMTPD_PORT RELAY_PORT   # smtpd on 127.0.0.1:SMTPD_PORT
#   bench/postfix-relay.sh stop DIR
#
# Clients on 127.0.0.0/8 may relay (mynetworks), as smtp-source cannot AUTH.
# POSTFIX_RELAY_POSTCONF: more main.cf settings, one `name = value` a line, applied last
# (the bounce tests route the bounce domain back to Outbox's listener with transport_maps).
set -euo pipefail

command=${1:?usage: postfix-relay.sh start|stop DIR [SMTPD_PORT RELAY_PORT]}
dir=${2:?DIR}
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)

case "$command" in
start)
  smtpd_port=${3:?SMTPD_PORT}
  relay_port=${4:?RELAY_PORT}
  mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
  cp -r /etc/postfix/. "$dir/etc/"
  # The queue and data directories must belong to the postfix user, as in /var/spool.
  chown -R postfix "$dir/data"
  postconf -c "$dir/etc" -e \
    "queue_directory = $dir/queue" \
    "data_directory = $dir/data" \
    "inet_interfaces = 127.0.0.1" \
    "inet_protocols = ipv4" \
    "relayhost = [127.0.0.1]:$relay_port" \
    "mynetworks = 127.0.0.0/8" \
    "mydestination =" \
    "default_transport = smtp" "relay_transport = relay" \
    "maillog_file_prefixes = $dir" \
    "maillog_file = $dir/maillog" \
    "smtputf8_enable = no" \
    "smtp_tls_security_level = none" \
    "smtpd_tls_security_level = none" \
    "default_destination_concurrency_limit = 20" \
    "alias_maps =" "alias_database =" \
    "multi_instance_enable = no" \
    "myhostname = postfix-bench.localdomain"
  if [[ -n "${POSTFIX_RELAY_POSTCONF:-}" ]]; then
    while IFS= read -r setting; do
      [[ -n "$setting" ]] && postconf -c "$dir/etc" -e "$setting"
    done <<<"$POSTFIX_RELAY_POSTCONF"
  fi
  # smtpd on our port instead of 25, nothing chrooted (the chroot would lack our paths).
  postconf -c "$dir/etc" -M# smtp/inet >/dev/null
  postconf -c "$dir/etc" -M "127.0.0.1:$smtpd_port/inet=127.0.0.1:$smtpd_port inet n - n - - smtpd"
  postconf -c "$dir/etc" -F '*/*/chroot = n'
  # The maillog_file needs postlogd; it is in the stock master.cf of Postfix 3.7.
  postfix -c "$dir/etc" check >/dev/null 2>&1 || postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
  # postfix reports startup errors on a terminal only: give it one with script(1).
  if ! out=$(script -eqc "postfix -c $dir/etc start" /dev/null); then
    echo "postfix-relay: $out" >&2
    exit 1
  fi
  # Wait until smtpd answers.
  for _ in $(seq 1 100); do
    if python3 - "$smtpd_port" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
assert s.recv(100).startswith(b"220")
PY
    then exit 0; fi
    sleep 0.1
  done
  echo "postfix-relay: smtpd did not start on 127.0.0.1:$smtpd_port; see $dir/maillog" >&2
  exit 1
  ;;
stop)
  postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
  ;;
*)
  echo "usage: postfix-relay.sh start|stop DIR [SMTPD_PORT RELAY_PORT]" >&2
  exit 64
  ;;
esac
