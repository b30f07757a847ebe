#!/usr/bin/env bash
# WAN benchmark: `mirror copy` vs `skopeo copy --all` with the source and the destination
# registry each behind a simulated link: a network namespace per registry, its veth shaped to
# 200 Mbit/s per direction (`tc tbf`), and 20 ms each way (40 ms round trip) added by
# bench/delay_proxy.py, because this kernel has no `netem` qdisc (where it has one,
# WAN_NETEM=1 puts the delay on the links instead). See bench/README.md ("WAN").
#
# Usage (root: namespaces and qdiscs): bench/wan.sh
# Environment:
#   WAN_RUNS      runs per image and tool (default 3; interleaved, ours first on odd runs)
#   WAN_DELAY     one-way delay per link (default 20ms)
#   WAN_RATE      rate per direction (default 200mbit)
#   WAN_IMAGES    which fixtures (default "single multi big"; big is the 1 GiB layer)
#   BENCH_OUT     work directory (default bench/out; fixtures are cached there)
#   BENCH_SKIP_BUILD=1  use the binaries already in target/release/examples
#
# Only namespaces and links this script creates are touched; all are removed on exit.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${WAN_RUNS:-3}
DELAY=${WAN_DELAY:-20ms}
RATE=${WAN_RATE:-200mbit}
IMAGES=${WAN_IMAGES:-single multi big}
OUT=${BENCH_OUT:-$ROOT/bench/out}
TAG=v1
ID=$$
NS_SRC=mwan-src-$ID
NS_DST=mwan-dst-$ID

log() { printf '[wan %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, tc)"
for t in ip tc docker-registry skopeo curl; do
  command -v "$t" >/dev/null || die "$t missing (apt-get install -y iproute2 docker-registry skopeo curl)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install -y time)"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building (release): mirror, bench_fixture"
  cargo build --release --quiet -p mirror-cli --example mirror --example bench_fixture
fi
MIRROR=$ROOT/target/release/examples/mirror
FIXTURE=$ROOT/target/release/examples/bench_fixture

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/wan.XXXXXX")
RAW=$WORK/raw.tsv
: >"$RAW"
declare -A PID=()

cleanup() {
  for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; done
  ip netns del "$NS_SRC" 2>/dev/null || true
  ip netns del "$NS_DST" 2>/dev/null || true
  ip link del "ws$ID" 2>/dev/null || true
  ip link del "wd$ID" 2>/dev/null || true
  rm -rf "$WORK"/*-storage
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# link NS ROOT_IF NET: a veth pair between this namespace (ROOT_IF, NET.1) and NS (NET.2),
# both ends shaped with netem (DELAY each way, RATE per direction).
link() {
  local ns=$1 dev=$2 net=$3
  ip netns add "$ns"
  ip link add "$dev" type veth peer name "${dev}p"
  ip link set "${dev}p" netns "$ns"
  ip addr add "$net.1/24" dev "$dev"
  ip link set "$dev" up
  ip netns exec "$ns" ip addr add "$net.2/24" dev "${dev}p"
  ip netns exec "$ns" ip link set "${dev}p" up
  ip netns exec "$ns" ip link set lo up
  if [ "${WAN_NETEM:-0}" = 1 ]; then
    tc qdisc add dev "$dev" root netem delay "$DELAY" rate "$RATE" limit 100000
    ip netns exec "$ns" tc qdisc add dev "${dev}p" root netem delay "$DELAY" rate "$RATE" limit 100000
  else
    tc qdisc add dev "$dev" root tbf rate "$RATE" burst 256kb latency 200ms
    ip netns exec "$ns" tc qdisc add dev "${dev}p" root tbf rate "$RATE" burst 256kb latency 200ms
  fi
}

# registry NAME NS ADDR: a distribution registry in NS on ADDR:5000.
registry() {
  local name=$1 ns=$2 addr=$3 cfg=$WORK/$1.yml
  mkdir -p "$WORK/$name-storage"
  registry_config "$cfg" "$WORK/$name-storage" "$addr:5000"
  ip netns exec "$ns" docker-registry serve "$cfg" >>"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://$addr:5000/v2/" && return
    sleep 0.05
  done
  die "registry $name did not answer on $addr:5000"
}

link "$NS_SRC" "ws$ID" 10.77.1
link "$NS_DST" "wd$ID" 10.77.2
registry src "$NS_SRC" 10.77.1.2
registry dst "$NS_DST" 10.77.2.2
if [ "${WAN_NETEM:-0}" = 1 ]; then
  SRC=10.77.1.2:5000
  DST=10.77.2.2:5000
  RTT=$(ping -c 3 -q 10.77.1.2 2>/dev/null | awk -F/ '/^rtt/ {print $5}' || echo "?")
else
  # The delay proxies listen on loopback (both tools speak plain HTTP there) and reach the
  # registries over the shaped links.
  secs=$(awk -v d="$DELAY" 'BEGIN { n=d+0; if (d ~ /ms$/) n/=1000; print n }')
  SP=$((20000 + RANDOM % 20000)); DP=$((SP + 1))
  python3 bench/delay_proxy.py 127.0.0.1 "$SP" 10.77.1.2 5000 "$secs" & PID[psrc]=$!
  python3 bench/delay_proxy.py 127.0.0.1 "$DP" 10.77.2.2 5000 "$secs" & PID[pdst]=$!
  SRC=127.0.0.1:$SP
  DST=127.0.0.1:$DP
  for _ in $(seq 100); do curl -s -o /dev/null "http://$SRC/v2/" && curl -s -o /dev/null "http://$DST/v2/" && break; sleep 0.05; done
  RTT=$(curl -s -o /dev/null -w '%{time_connect} %{time_total}' "http://$SRC/v2/" | awk '{ printf "%.0f", ($2-$1)*1000 }')
fi
log "source $SRC, destination $DST, request round trip ${RTT} ms, $RATE per direction"

"$FIXTURE" "$OUT/fixtures" $IMAGES
declare -A SIZE=()
for image in $IMAGES; do
  log "pushing $image to the source (skopeo, through the link)"
  skopeo copy --quiet --all --dest-tls-verify=false "oci:$OUT/fixtures/$image:$TAG" "docker://$SRC/bench/$image:$TAG" >&2
  SIZE[$image]=$(du -sb "$OUT/fixtures/$image/blobs" | cut -f1)
done

# wipe_dst: an empty destination for a cold copy.
wipe_dst() {
  kill "${PID[dst]}" 2>/dev/null || true
  wait "${PID[dst]}" 2>/dev/null || true
  rm -rf "$WORK/dst-storage"
  sync
  registry dst "$NS_DST" 10.77.2.2
}

measure() {
  local image=$1 tool=$2 run=$3 t0 t1 rss
  wipe_dst
  t0=$EPOCHREALTIME
  case $tool in
    ours) /usr/bin/time -f '%M' -o "$WORK/rss" "$MIRROR" copy --src-plain-http --dest-plain-http \
            "$SRC/bench/$image:$TAG" "$DST/bench/$image:$TAG" --json >"$WORK/out" 2>"$WORK/err" ;;
    skopeo) /usr/bin/time -f '%M' -o "$WORK/rss" skopeo copy --quiet --all --src-tls-verify=false \
            --dest-tls-verify=false "docker://$SRC/bench/$image:$TAG" "docker://$DST/bench/$image:$TAG" \
            >"$WORK/out" 2>"$WORK/err" ;;
  esac || { cat "$WORK/err" >&2; die "$tool failed ($image run $run)"; }
  t1=$EPOCHREALTIME
  rss=$(tail -1 "$WORK/rss")
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$image" "$tool" "$run" "$wall" "$rss" >>"$RAW"
  log "  $image run $run $tool: ${wall}s, $((rss / 1024)) MiB"
}

for image in $IMAGES; do
  for run in $(seq "$RUNS"); do
    if [ $((run % 2)) -eq 1 ]; then order="ours skopeo"; else order="skopeo ours"; fi
    for tool in $order; do measure "$image" "$tool" "$run"; done
  done
done

median() {
  awk -F'\t' -v i="$1" -v t="$2" -v c="$3" '$1==i && $2==t {print $c}' "$RAW" | sort -g |
    awk '{v[NR]=$1} END { if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'
}
rate_bytes=$(awk -v r="$RATE" 'BEGIN { n=r+0; if (r ~ /gbit/) n*=1e9; else if (r ~ /mbit/) n*=1e6; else if (r ~ /kbit/) n*=1e3; print n/8 }')
echo "| image | bytes | ours (s) | skopeo (s) | ratio | ours, share of link | skopeo, share of link | ours peak RSS (MiB) | skopeo peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|"
for image in $IMAGES; do
  o=$(median "$image" ours 4); k=$(median "$image" skopeo 4)
  or=$(median "$image" ours 5); kr=$(median "$image" skopeo 5)
  awk -v i="$image" -v b="${SIZE[$image]}" -v o="$o" -v k="$k" -v or="$or" -v kr="$kr" -v L="$rate_bytes" \
    'BEGIN { printf "| %s | %d | %.2f | %.2f | %.2f | %.0f%% | %.0f%% | %.1f | %.1f |\n", i, b, o, k, o/k, 100*b/o/L, 100*b/k/L, or/1024, kr/1024 }'
done
echo
echo "median of $RUNS interleaved runs; RTT ${RTT} ms to each registry, $RATE per direction; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load $(cut -d' ' -f1-3 /proc/loadavg)"
