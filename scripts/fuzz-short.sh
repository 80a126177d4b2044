#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a short while (default 30 s each). Not part of
# ./test.sh. cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 unlocks them on stable.
# Usage: scripts/fuzz-short.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-30}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-short: cargo install cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
for target in $(cargo fuzz list); do
  echo "fuzz-short: $target for ${seconds}s" >&2
  cargo fuzz run "$target" -- -max_total_time="$seconds" -max_len=4096
done
