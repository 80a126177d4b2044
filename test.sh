#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (unit, integration, interop against
# real peers). Installs the peers it needs (Postfix tools, dnsmasq, aiosmtpd, PostgreSQL)
# when they are missing. Usage: ./test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")"

scripts/install-peers.sh

# PostgreSQL for the store tests: OUTBOX_TEST_POSTGRES_URL, the local server, or a
# throwaway cluster that the trap stops.
source scripts/postgres-test-env.sh
trap outbox_pg_stop EXIT

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every public item documented, every intra-doc link resolving.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --all-features
# Every crate has what `cargo package` needs (description, license, readme, ...).
cargo package --workspace --no-verify --allow-dirty --list >/dev/null
# Each crate's tests and benches build on their own, with only the test-kit features that
# crate asks for (the workspace build above unifies features and would hide a missing one).
for crate in outbox-mime outbox-smtp outbox-queue; do
  cargo check -q -p "$crate" --all-targets --locked
done
cargo nextest run --workspace --locked --no-fail-fast "$@"
scripts/client-interop.sh
cargo test --workspace --locked --doc
scripts/schemathesis.sh
scripts/browser-test.sh
