#!/usr/bin/env bash
# Admission latency of the webhook for an image already mirrored, and its memory (run by hand,
# not a test): builds the release `mirror-webhook` and `bench_admission` examples and runs the
# benchmark (real registries on 127.0.0.1, the webhook as its own process, reviews over HTTPS).
#   bench/admission.sh [ADMISSIONS [CONCURRENCY]]      # defaults: 1000 16
# BENCH_SKIP_BUILD=1 uses the binaries already built. Installs docker-registry when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-registry >/dev/null && [ ! -x /usr/bin/docker-registry ]; then
  apt-get install -y docker-registry
fi
target="${CARGO_TARGET_DIR:-target}"
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then
  cargo build --release -p mirror-cli --example mirror-webhook --example bench_admission
fi
exec "$target/release/examples/bench_admission" "${1:-1000}" "${2:-16}"
