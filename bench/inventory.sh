#!/usr/bin/env bash
# Inventory, refresh and sweep at 10,000 images (issue 25): requests, wall time and peak RSS
# of `mirror ls`, of `mirror serve`'s refreshes (cold, nothing changed, 1 % changed) and of a
# dry-run and a real `mirror sweep`, against a CNCF distribution registry on 127.0.0.1.
# See bench/README.md ("Inventory at 10,000 images").
#
# Usage: bench/inventory.sh
# Environment:
#   BENCH_REPOS, BENCH_PER_REPO  Service-mode repositories and images in each (1000, 10)
#   BENCH_SIGN_EVERY             every Nth image gets a cosign signature (10; 0: none)
#   BENCH_SWEEP_IMAGES, BENCH_EXPIRED  the Cluster-mode repository swept (10000, 9000)
#   BENCH_CHANGED                new images before the last refresh (100: 1 % of 10,000)
#   BENCH_SWEEP_TIMEOUT          seconds a sweep may take before it is stopped (900; the
#                                registry's own DELETE looks up every tag of the repository:
#                                about 2.5 a second with 20,000 tags on 2 cores, so the
#                                full sweep of 9,000 images takes about an hour)
#   BENCH_BEFORE=REV             also measure REV (built from `git archive REV` in
#                                $BENCH_OUT/before-src, its own target directory
#                                $BENCH_OUT/before-target, with this commit's bench_inventory
#                                helper), each build on a fresh copy of the same registry storage
#   BENCH_OUT                    work directory (bench/out)
#   BENCH_SKIP_BUILD=1           use the binaries already in $BENCH_OUT/bin-*
#   CARGO_TARGET_DIR             where cargo builds (target/)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
. scripts/lib.sh
OUT=${BENCH_OUT:-$ROOT/bench/out}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REPOS=${BENCH_REPOS:-1000}
PER=${BENCH_PER_REPO:-10}
SIGN=${BENCH_SIGN_EVERY:-10}
SWEEP_IMAGES=${BENCH_SWEEP_IMAGES:-10000}
EXPIRED=${BENCH_EXPIRED:-9000}
CHANGED=${BENCH_CHANGED:-100}
SWEEP_TIMEOUT=${BENCH_SWEEP_TIMEOUT:-900}
BEFORE=${BENCH_BEFORE:-}

log() { printf '[inventory %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v docker-registry >/dev/null || die "docker-registry missing (apt-get install -y docker-registry)"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install -y time)"

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/inventory.XXXXXX")
REG_PID=""
cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK/storage" "$WORK/seed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build LABEL SRC_DIR TARGET_DIR: the release `mirror` and `bench_inventory` of SRC_DIR into
# $OUT/bin-LABEL. Each tree has a target directory of its own: cargo names the workspace's
# artifacts by their path relative to the workspace, so two trees sharing one would take
# each other's builds for fresh.
build() {
  local label=$1 src=$2 target=$3
  log "building $label (release, $target)"
  (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release --quiet -p mirror-cli \
    --example mirror --example bench_inventory)
  mkdir -p "$OUT/bin-$label"
  cp "$target/release/examples/mirror" "$target/release/examples/bench_inventory" "$OUT/bin-$label/"
}

LABELS=(now)
if [ -n "$BEFORE" ]; then LABELS=(before now); fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  if [ -n "$BEFORE" ]; then
    SRC=$OUT/before-src
    rm -rf "$SRC" && mkdir -p "$SRC"
    git archive "$BEFORE" | tar -x -C "$SRC"
    cp examples/cli/bench_inventory.rs "$SRC/examples/cli/"
    grep -q bench_inventory "$SRC/examples/cli/Cargo.toml" || cat >>"$SRC/examples/cli/Cargo.toml" <<'EOF'

[[example]]
name = "bench_inventory"
path = "bench_inventory.rs"
EOF
    grep -q '^bytes' "$SRC/examples/cli/Cargo.toml" ||
      sed -i 's/^\[dev-dependencies\]$/[dev-dependencies]\nbytes.workspace = true/' "$SRC/examples/cli/Cargo.toml"
    cp Cargo.lock "$SRC/Cargo.lock"
    BEFORE_TARGET=$OUT/before-target
    # The dependencies are the same: start from this tree's release build when there is one.
    if [ ! -d "$BEFORE_TARGET/release" ] && [ -d "$TARGET/release" ]; then
      mkdir -p "$BEFORE_TARGET" && cp -a "$TARGET/release" "$BEFORE_TARGET/"
    fi
    build before "$SRC" "$BEFORE_TARGET"
  fi
  build now "$ROOT" "$TARGET"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_registry() {
  local dir=$1 port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 30000))
    if port_free "$port"; then break; fi
  done
  registry_config "$WORK/registry.yml" "$dir" "127.0.0.1:$port" error
  : >"$WORK/registry.log"
  docker-registry serve "$WORK/registry.yml" >>"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  HOST=127.0.0.1:$port
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  die "the registry did not start: $(tail -3 "$WORK/registry.log")"
}
stop_registry() {
  kill "$REG_PID" 2>/dev/null || true
  wait "$REG_PID" 2>/dev/null || true
  REG_PID=""
}
requests() { grep -c ' HTTP/1.1" ' "$WORK/registry.log" || true; }

# --- the registry's content, once -------------------------------------------------------------
log "populating: $REPOS repositories × $PER images (every ${SIGN}th signed), and $SWEEP_IMAGES images ($EXPIRED expired) in one repository"
mkdir -p "$WORK/seed"
start_registry "$WORK/seed"
started=$EPOCHREALTIME
"$OUT/bin-now/bench_inventory" populate "$HOST" bench "$REPOS" "$PER" "$SIGN"
"$OUT/bin-now/bench_inventory" populate-cluster "$HOST" sweep "$SWEEP_IMAGES" "$EXPIRED"
log "populated in $(echo "$EPOCHREALTIME - $started" | bc) s ($(requests) requests)"
stop_registry

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# timed LABEL PHASE TIMEOUT CMD...: runs the CLI, records requests, wall time, peak RSS.
timed() {
  local label=$1 phase=$2 limit=$3; shift 3
  local before after t0 t1 rc=0
  before=$(requests)
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$WORK/time" timeout "$limit" "$@" >"$WORK/out.json" 2>"$WORK/err" || rc=$?
  t1=$EPOCHREALTIME
  after=$(requests)
  local note=""
  if [ "$rc" = 124 ]; then note="stopped after ${limit} s"; elif [ "$rc" != 0 ]; then die "$phase ($label): $(tail -3 "$WORK/err")"; fi
  local rss
  rss=$(tail -1 "$WORK/time" | tr -dc 0-9)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$phase" "$((after - before))" \
    "$(echo "$t1 - $t0" | bc)" "${rss:-0}" "$note" >>"$RESULTS"
  log "$label $phase: $((after - before)) requests, $(echo "$t1 - $t0" | bc) s ${note}"
}

for label in "${LABELS[@]}"; do
  log "run: $label"
  rm -rf "$WORK/storage"
  cp -a "$WORK/seed" "$WORK/storage"
  start_registry "$WORK/storage"
  BIN=$OUT/bin-$label
  timed "$label" ls 1800 "$BIN/mirror" ls --registry "$HOST" --cluster bench --json
  images=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(r["images"]) for r in d["repositories"]))' "$WORK/out.json")
  log "$label ls: $images images"
  "$BIN/bench_inventory" serve "$HOST" bench "$WORK/registry.log" "$CHANGED" |
    awk -v l="$label" -F'\t' '$1=="RESULT"{printf "%s\t%s\t%s\t%s\t%s\t\n", l, $2, $3, $4, $5}' >>"$RESULTS"
  timed "$label" sweep-dry-run "$SWEEP_TIMEOUT" "$BIN/mirror" sweep --registry "$HOST" --cluster sweep --retention 30d --dry-run --json
  timed "$label" sweep "$SWEEP_TIMEOUT" "$BIN/mirror" sweep --registry "$HOST" --cluster sweep --retention 30d --json
  if [ -s "$WORK/out.json" ]; then
    deleted=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["deleted"]))' "$WORK/out.json")
    log "$label sweep: $deleted deleted"
  fi
  stop_registry
done

# --- the table ----------------------------------------------------------------------------------
{
  echo "| build | call | requests | per image | wall (s) | peak RSS (MiB) | note |"
  echo "|---|---|---:|---:|---:|---:|---|"
  while IFS=$'\t' read -r label phase req wall rss note; do
    case $phase in
      sweep*) n=$SWEEP_IMAGES ;;
      serve-changed) n=$((REPOS * PER + CHANGED)) ;;
      *) n=$((REPOS * PER)) ;;
    esac
    printf '| %s | %s | %s | %.2f | %.2f | %.1f | %s |\n' "$label" "$phase" "$req" \
      "$(echo "$req / $n" | bc -l)" "$wall" "$(echo "$rss / 1024" | bc -l)" "$note"
  done <"$RESULTS"
} | tee "$OUT/inventory-results.md"
