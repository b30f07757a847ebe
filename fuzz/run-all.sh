#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other, on one core each.
#
#   fuzz/run-all.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on stable Rust through RUSTC_BOOTSTRAP=1
# (cargo-fuzz passes nightly-only -Z flags). New inputs go to fuzz/work/<target>/ (ignored by
# git); fuzz/corpus/<target>/ is read as seeds and not written. Crashes are kept (fork mode
# with -ignore_crashes=1 goes on after one) in fuzz/work/<target>/artifacts/; logs in
# fuzz/work/<target>.log. Token dictionaries: fuzz/dicts/<target>.dict.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-150}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(reference oci_source digest www_authenticate link manifest dockerfile_args docker_config token_answer bookkeeping_tag)
fi
export RUSTC_BOOTSTRAP=1
# No sanitizer: the code under test is safe Rust, so ASan only slows runs (without it the
# memcmp hooks are off: the dictionaries in dicts/ make up for them);
# debug assertions (-a) turn arithmetic overflow into a crash.
[ -n "${SKIP_BUILD:-}" ] || cargo fuzz build -s none -a  # SKIP_BUILD=1: reuse the binaries
bin=target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
    mkdir -p "work/$t/new" "work/$t/artifacts"
    echo "== $t: ${secs}s"
    "$bin/$t" "work/$t/new" "corpus/$t" \
        -fork=1 -ignore_crashes=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=8192 -artifact_prefix="work/$t/artifacts/" -print_final_stats=1 \
        -dict="dicts/$t.dict" >"work/$t.log" 2>&1 || true
    grep -E '^#[0-9]+: cov' "work/$t.log" | tail -1
    echo "crash files: $(ls "work/$t/artifacts" | wc -l)"
done
