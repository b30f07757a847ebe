#!/usr/bin/env bash
# Benchmarks `mirror copy` (examples/mirror.rs) against `skopeo copy --all` between two local
# CNCF distribution registries. See bench/README.md for the scenarios and targets.
#
# Usage: bench/run.sh
# Environment:
#   BENCH_RUNS      runs per scenario and tool for `single` and `multi` (default 5)
#   BENCH_BIG_RUNS  runs of the 1 GiB peak-memory scenario (default 3)
#   BENCH_OUT       work directory (default bench/out; fixtures are cached there)
#   BENCH_RESULTS   where the Markdown table goes besides stdout (default bench/results.md)
#   BENCH_SKIP_BUILD=1  use the binaries already in $CARGO_TARGET_DIR/release/examples
#   CARGO_TARGET_DIR    where cargo builds (default target/)
#   BENCH_TMPFS=1   keep both registries' storage on a tmpfs (root only): takes the disk's
#                   write-back out of the cold copies, which it otherwise dominates here
#
# Progress goes to stderr; the table goes to stdout and to $BENCH_RESULTS.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
. scripts/lib.sh

RUNS=${BENCH_RUNS:-5}
BIG_RUNS=${BENCH_BIG_RUNS:-3}
OUT=${BENCH_OUT:-$ROOT/bench/out}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results.md}
TAG=v1

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -----------------------------------------------------------------------------------
install_missing docker-registry docker-registry skopeo skopeo /usr/bin/time time curl curl
TIME=/usr/bin/time

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building (release): mirror, bench_fixture"
  cargo build --release --quiet -p mirror-cli --example mirror --example bench_fixture
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MIRROR=$TARGET/release/examples/mirror
FIXTURE=$TARGET/release/examples/bench_fixture
[ -x "$MIRROR" ] || die "$MIRROR missing"
[ -x "$FIXTURE" ] || die "$FIXTURE missing"

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/run.XXXXXX")
STORE=$WORK
if [ "${BENCH_TMPFS:-0}" = 1 ]; then
  STORE=$WORK/tmpfs
  mkdir -p "$STORE"
  mount -t tmpfs -o size=8g tmpfs "$STORE" || die "BENCH_TMPFS=1 needs root (mount tmpfs)"
fi
RAW=$WORK/raw.tsv
: >"$RAW"

# --- registries ------------------------------------------------------------------------------
declare -A REG_PID=()

cleanup() {
  local name
  for name in "${!REG_PID[@]}"; do
    kill "${REG_PID[$name]}" 2>/dev/null || true
    wait "${REG_PID[$name]}" 2>/dev/null || true
  done
  rm -rf "$STORE/dst-storage" "$STORE/src-storage"
  if [ "$STORE" != "$WORK" ]; then umount "$STORE" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port found"
}

# start_registry NAME PORT: serves $STORE/NAME-storage on 127.0.0.1:PORT.
start_registry() {
  local name=$1 port=$2 cfg=$WORK/$1.yml
  mkdir -p "$STORE/$name-storage"
  registry_config "$cfg" "$STORE/$name-storage" "127.0.0.1:$port"
  docker-registry serve "$cfg" >>"$WORK/$name.log" 2>&1 &
  REG_PID[$name]=$!
  for _ in $(seq 200); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then return; fi
    kill -0 "${REG_PID[$name]}" 2>/dev/null || die "registry $name exited: $(tail -5 "$WORK/$name.log")"
    sleep 0.05
  done
  die "registry $name did not answer on port $port"
}

stop_registry() {
  local name=$1
  if [ -n "${REG_PID[$name]:-}" ]; then
    kill "${REG_PID[$name]}" 2>/dev/null || true
    wait "${REG_PID[$name]}" 2>/dev/null || true
    unset "REG_PID[$name]"
  fi
}

# Empty destination: stop, wipe, start, and flush dirty pages so the previous run's writes do
# not land on the next one.
reset_dst() {
  stop_registry dst
  rm -rf "$STORE/dst-storage"
  sync
  start_registry dst "$DST_PORT"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
SRC_PORT=$(free_port)
start_registry src "$SRC_PORT"
DST_PORT=$(free_port)
while [ "$DST_PORT" = "$SRC_PORT" ]; do DST_PORT=$(free_port); done
start_registry dst "$DST_PORT"
SRC=127.0.0.1:$SRC_PORT
DST=127.0.0.1:$DST_PORT
log "source registry $SRC, destination registry $DST, work dir $WORK"

# --- fixtures --------------------------------------------------------------------------------
log "fixtures (cached in $OUT/fixtures)"
"$FIXTURE" "$OUT/fixtures" single multi big

ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json'
# manifest_digest HOST:PORT REPO REF: the digest the registry gives the manifest.
manifest_digest() {
  curl -sfI -H "Accept: $ACCEPT" "http://$1/v2/$2/manifests/$3" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}'
}

declare -A SRC_DIGEST=()
for name in single multi big; do
  log "pushing $name to the source registry (skopeo)"
  skopeo copy --quiet --all --dest-tls-verify=false \
    "oci:$OUT/fixtures/$name:$TAG" "docker://$SRC/bench/$name:$TAG" >&2
  SRC_DIGEST[$name]=$(manifest_digest "$SRC" "bench/$name" "$TAG")
  [ -n "${SRC_DIGEST[$name]}" ] || die "source bench/$name:$TAG has no digest"
done
sync

# --- measurements ----------------------------------------------------------------------------
# measure SCENARIO IMAGE TOOL RUN SRC_REF DST_REPO: times one copy, checks the digest, appends
# "scenario image tool run wall_s rss_kib bytes_uploaded blobs_mounted" to $RAW. Run 0 is a
# warm-up: checked and logged, not recorded.
measure() {
  local scenario=$1 image=$2 tool=$3 run=$4 src_ref=$5 dst_repo=$6
  local tf=$WORK/time.$$ of=$WORK/out.$$ ef=$WORK/err.$$ rc=0 t0 t1
  # Wall time from bash's microsecond clock (GNU time's %e has only 10 ms resolution, too
  # coarse for warm copies); peak RSS from GNU time.
  t0=$EPOCHREALTIME
  case $tool in
    ours)
      $TIME -f '%e %M' -o "$tf" "$MIRROR" copy "$src_ref" "$DST/$dst_repo:$TAG" --json \
        >"$of" 2>"$ef" || rc=$?
      ;;
    floor)
      # Several processes: no peak RSS to speak of.
      floor_copy "$OUT/fixtures/$image" "$dst_repo" >"$of" 2>"$ef" || rc=$?
      echo "- -" >"$tf"
      ;;
    skopeo)
      $TIME -f '%e %M' -o "$tf" skopeo copy --quiet --all \
        --src-tls-verify=false --dest-tls-verify=false \
        "docker://$src_ref" "docker://$DST/$dst_repo:$TAG" >"$of" 2>"$ef" || rc=$?
      ;;
  esac
  t1=$EPOCHREALTIME
  if [ "$rc" -ne 0 ]; then
    cat "$ef" >&2
    die "$tool failed ($scenario/$image run $run, exit $rc)"
  fi
  local wall rss bytes=- mounted=- _e
  read -r _e rss < <(tail -1 "$tf")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if [ "$tool" = ours ]; then
    bytes=$(grep -o '"bytes_uploaded":[0-9]*' "$of" | cut -d: -f2 || true)
    mounted=$(grep -o '"blobs_mounted":[0-9]*' "$of" | cut -d: -f2 || true)
    cp "$of" "$WORK/ours-$scenario-$image-$run.json"
  fi
  local got
  got=$(manifest_digest "$DST" "$dst_repo" "$TAG")
  [ "$got" = "${SRC_DIGEST[$image]}" ] ||
    die "$tool $scenario/$image run $run: destination digest '$got' != source ${SRC_DIGEST[$image]}"
  if [ "$run" = 0 ]; then
    log "  $scenario/$image warm-up $tool: ${wall}s (not recorded)"
    rm -f "$tf" "$of" "$ef"
    return
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$scenario" "$image" "$tool" "$run" "$wall" "$rss" "${bytes:--}" "${mounted:--}" >>"$RAW"
  if [ "$tool" = ours ]; then
    log "  $scenario/$image run $run $tool: ${wall}s, $((rss / 1024)) MiB, uploaded $bytes B, $mounted mounted"
  else
    log "  $scenario/$image run $run $tool: ${wall}s, $([ "$rss" = - ] && echo "-" || echo $((rss / 1024))) MiB"
  fi
  rm -f "$tf" "$of" "$ef"
}

# floor_copy LAYOUT DST_REPO: the destination's ingest with a minimal client, for the cold
# scenarios: curl streams every blob file of the fixture's layout straight into the
# destination (POST, then one PUT of the file, 5 at once: no source registry to read from, no
# hashing here), then the manifests, children first. A copy tool also has to read the source.
floor_copy() {
  local layout=$1 repo=$2 top
  find "$layout/blobs/sha256" -type f -printf '%f\n' |
    xargs -P 5 -I{} sh -c '
      loc=$(curl -sf -D - -o /dev/null -X POST "http://$1/v2/$2/blobs/uploads/" |
        tr -d "\r" | awk -F": " "tolower(\$1)==\"location\" {print \$2}")
      case $loc in http*) ;; *) loc=http://$1$loc ;; esac
      case $loc in *\?*) sep="&" ;; *) sep="?" ;; esac
      curl -sf -o /dev/null -X PUT -H "Content-Type: application/octet-stream" \
        -T "$3/blobs/sha256/$4" "$loc${sep}digest=sha256:$4"' _ "$DST" "$repo" "$layout" {} ||
    return 1
  top=$(sed -n 's/.*"digest":"sha256:\([0-9a-f]*\)".*/\1/p' "$layout/index.json")
  put_manifests "$layout" "$repo" "$top" "$TAG"
}
# put_manifests LAYOUT REPO HEX REF: PUTs the manifest (an index's children first).
put_manifests() {
  local file=$1/blobs/sha256/$3 media child
  media=$(grep -o '"mediaType":"[^"]*"' "$file" | head -1 | cut -d'"' -f4)
  if [ "$media" = application/vnd.oci.image.index.v1+json ]; then
    for child in $(grep -o '"digest":"sha256:[0-9a-f]*"' "$file" | cut -d: -f3 | tr -d '"'); do
      [ "$(grep -o '"mediaType":"[^"]*"' "$1/blobs/sha256/$child" | head -1 | cut -d'"' -f4)" = "${media%.index.v1+json}.manifest.v1+json" ] || continue
      put_manifests "$1" "$2" "$child" "sha256:$child" || return 1
    done
  fi
  curl -sf -o /dev/null -X PUT -H "Content-Type: $media" --data-binary "@$file" \
    "http://$DST/v2/$2/manifests/$4"
}

# order RUN: the two tools, ours first on odd runs, skopeo first on even ones (and on the
# warm-up, run 0).
order() { if [ $(($1 % 2)) -eq 1 ]; then echo "ours skopeo"; else echo "skopeo ours"; fi; }
# cold_order RUN: the same, with the ingest floor (floor_copy) measured last.
cold_order() { echo "$(order "$1") floor"; }

# measure_runs SCENARIO IMAGE SOURCE DEST: $RUNS runs of both tools, in the order of `order`;
# RUN and TOOL in DEST stand for the run and the tool.
measure_runs() {
  local scenario=$1 image=$2 source=$3 dest=$4 run tool to
  log "scenario $scenario / $image ($RUNS runs)"
  for run in $(seq "$RUNS"); do
    for tool in $(order "$run"); do
      to=${dest//RUN/$run}
      measure "$scenario" "$image" "$tool" "$run" "$source" "${to//TOOL/$tool}"
    done
  done
}

for image in single multi; do
  log "scenario cold / $image ($RUNS runs after one warm-up per tool)"
  for run in $(seq 0 "$RUNS"); do
    for tool in $(cold_order "$run"); do
      reset_dst
      measure cold "$image" "$tool" "$run" "$SRC/bench/$image:$TAG" "bench/$image"
    done
  done

  # The destination now holds the image (same digest whichever tool copied last).
  measure_runs warm "$image" "$SRC/bench/$image:$TAG" "bench/$image"
  measure_runs second-repo "$image" "$DST/bench/$image:$TAG" "other-RUN-TOOL/$image"
done

log "scenario peak-memory / big ($BIG_RUNS runs after one warm-up per tool, 1 GiB layer)"
for run in $(seq 0 "$BIG_RUNS"); do
  for tool in $(order "$run"); do
    reset_dst
    measure cold-1GiB big "$tool" "$run" "$SRC/bench/big:$TAG" "bench/big"
  done
done

# --- report ----------------------------------------------------------------------------------
# median SCENARIO IMAGE TOOL COLUMN (5 wall, 6 rss KiB, 7 bytes): median over runs, or "-".
median() {
  awk -F'\t' -v s="$1" -v i="$2" -v t="$3" -v c="$4" \
    '$1==s && $2==i && $3==t && $c!="-" {print $c}' "$RAW" |
    sort -g | awk '{v[NR]=$1} END {
      if (NR==0) {print "-"; exit}
      if (NR%2) printf "%s\n", v[(NR+1)/2]; else printf "%s\n", (v[NR/2]+v[NR/2+1])/2 }'
}
fmt() { awk -v v="$1" -v d="$2" 'BEGIN { if (v=="-") print "-"; else printf "%.*f\n", d, v }'; }
mib() { awk -v v="$1" 'BEGIN { if (v=="-") print "-"; else printf "%.1f\n", v/1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="-"||b=="-"||b==0) print "-"; else printf "%.2f\n", a/b }'; }
# bytes_cell SCENARIO IMAGE: median bytes uploaded (human-readable) and median blobs mounted.
bytes_cell() {
  local b m
  b=$(median "$1" "$2" ours 7)
  m=$(median "$1" "$2" ours 8)
  [ "$b" = "-" ] && { echo "-"; return; }
  awk -v b="$b" -v m="$m" 'BEGIN {
    if (b>=1048576) h=sprintf("%d (%.1f MiB)", b, b/1048576); else h=sprintf("%d", b)
    if (m!="-" && m>0) h=h sprintf(", %d mounted", m)
    print h }'
}

mirror_version="examples $(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
if git rev-parse --git-dir >/dev/null 2>&1; then
  mirror_version="$mirror_version, git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo '+dirty')"
fi

{
  echo "# mirror copy vs skopeo copy"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- host: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "- load average (1, 5, 15 min): $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end (anything well above 0 means other work shared the CPUs)"
  echo "- mirror: $mirror_version (release build)"
  echo "- $(skopeo --version)"
  echo "- registry: $(docker-registry --version 2>&1 | head -1)"
  if [ "$STORE" != "$WORK" ]; then
    echo "- registry storage: tmpfs (BENCH_TMPFS=1)"
  else
    echo "- registry storage: the disk under bench/out"
  fi
  echo "- runs: N=$RUNS per scenario and tool (single, multi), $BIG_RUNS for the 1 GiB layer; medians; tool order alternates per run; cold scenarios start with one unrecorded warm-up copy per tool"
  echo "- images: single = 1 image, 5 layers, 200 MB; multi = 2-platform index, 5 layers each, 200 MB in all; big = 1 layer of 1 GiB"
  echo
  echo "| scenario | image | ours wall (s) | skopeo wall (s) | ratio ours/skopeo | ours peak RSS (MiB) | skopeo peak RSS (MiB) | ours bytes uploaded | curl, files → destination (s) | curl/skopeo |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for row in "cold single" "warm single" "second-repo single" \
             "cold multi" "warm multi" "second-repo multi" "cold-1GiB big"; do
    read -r s i <<<"$row"
    ow=$(median "$s" "$i" ours 5)
    sw=$(median "$s" "$i" skopeo 5)
    fw=$(median "$s" "$i" floor 5)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" "$i" \
      "$(fmt "$ow" 3)" "$(fmt "$sw" 3)" "$(ratio "$ow" "$sw")" \
      "$(mib "$(median "$s" "$i" ours 6)")" "$(mib "$(median "$s" "$i" skopeo 6)")" \
      "$(bytes_cell "$s" "$i")" "$(fmt "$fw" 3)" "$(ratio "$fw" "$sw")"
  done
  echo
  echo "Targets (issue 15): cold ≤ 0.6× skopeo; warm ≤ 0.25×; second-repo ≤ 0.3× with 0 bytes"
  echo "uploaded; peak RSS ≤ 20 MiB with the 1 GiB layer. curl, files → destination: curl streams the"
  echo "fixture's files straight into the destination, 5 at once: no source registry to read, no hashing"
  echo "(the destination's ingest with a minimal client; see bench/README)."
  echo "Raw samples: \`bench/out/${RAW#"$OUT"/}\` (not committed)."
} | tee "$RESULTS"
log "results written to $RESULTS"
