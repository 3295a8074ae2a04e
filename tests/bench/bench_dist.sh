#!/usr/bin/env bash
# Data-parallel training on one machine (issue 14), all figures from this run:
#  1. training throughput: 2 ranks x 1 thread (c10d Gloo on 127.0.0.1, launched as torchrun
#     launches them) vs 1 process x 1 thread, same films, same global batch (1 process uses
#     --accumulate 2, so both take the same optimizer steps);
#  2. the shared film cache: build rate (films/s) for a manifest of 10k+ rows (kermany224's
#     training rows repeated), then memory per rank while 2 ranks train on it (RSS, PSS and the
#     shared part from /proc/PID/smaps_rollup: the cache is one memory-mapped file).
#   tests/bench/bench_dist.sh BUILD_DIR [SIZE] [FILMS_PER_SPLIT]     (defaults 224, 256)
# BENCH_DIST_PARTS="train cache" (the default) chooses the parts.
set -euo pipefail
build=$(cd "${1:?usage: bench_dist.sh BUILD_DIR [SIZE] [FILMS]}" && pwd)
size=${2:-224}
films=${3:-256}
src=$(cd "$(dirname "$0")/../.." && pwd)
data=${PS_SHARED_DATA:-$src/../shared/data}
cli=$build/pneumoscope
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$cli" split "$data/kermany224" -o split --seed 42 --task multiclass >/dev/null 2>&1
common=(--manifest split/manifest.csv --size "$size" --limit "$films" --epochs 1 --patience -1 --seed 1 --threads 1
        --batch 16 --no-augment)
parts=${BENCH_DIST_PARTS:-train cache}
port=$((20000 + $$ % 20000))
rate() { grep -o '[0-9.]* images/s' "$1" | head -1 | cut -d' ' -f1; }

rank() { # rank R PORT ARGS...: one of 2 ranks on this machine, as torchrun starts it (run it in a
  local r=$1 p=$2 # subshell: it becomes the train process, so $! is its pid)
  shift 2
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 RANK=$r LOCAL_RANK=$r exec "$cli" train "$@"
}

# --- 1. throughput -----------------------------------------------------------------------------
if [[ $parts == *train* ]]; then
"$cli" train "${common[@]}" --accumulate 2 -o one --cache cache.pscache >one.log 2>&1
(rank 1 $port "${common[@]}" -o two --cache cache.pscache >two.r1.log 2>&1) &
(rank 0 $port "${common[@]}" -o two --cache cache.pscache >two.r0.log 2>&1)
wait
one=$(rate one.log)
two=$(rate two.r0.log)
echo "training at $size px on $films films (batch 16 x 2 per step, 1 epoch):"
printf '  1 process x 1 thread (--accumulate 2): %6.2f images/s\n' "$one"
printf '  2 ranks x 1 thread (c10d Gloo):         %6.2f images/s   x%.2f\n' "$two" "$(awk "BEGIN{print $two / $one}")"
fi
[[ $parts == *cache* ]] || exit 0

# --- 2. the cache at 10k+ films --------------------------------------------------------------------
awk -F, 'NR == 1 { print; next } $5 == "train" { for (k = 0; k < 4; k++) print; next } { print }' \
  split/manifest.csv >big.csv
rows=$(($(wc -l <big.csv) - 1))
cached=$(awk -F, 'NR > 1 && ($5 == "train" || $5 == "val")' big.csv | wc -l)
t0=$(date +%s.%N)
"$cli" train --manifest big.csv --size "$size" --epochs 1 --limit 0 --threads 2 -o big --cache big.pscache \
  --patience -1 >big-build.log 2>&1 &
pid=$!
while ! grep -q 'training, .* validation films' big-build.log 2>/dev/null; do
  kill -0 $pid 2>/dev/null || { cat big-build.log; exit 1; }
  sleep 0.2
done
t1=$(date +%s.%N)
kill $pid; wait $pid 2>/dev/null || true
echo "cache: $rows manifest rows, $cached films cached (train + val) at $size px: $(du -m big.pscache | cut -f1) MB;"
printf '  built in %.1f s with 2 threads: %.0f films/s\n' "$(awk "BEGIN{print $t1 - $t0}")" \
  "$(awk "BEGIN{print $cached / ($t1 - $t0)}")"
# 2 ranks on it: memory once both train (the cache reused, memory-mapped)
for r in 0 1; do
  (rank $r $((port + 1)) --manifest big.csv --size "$size" --epochs 1 --threads 1 -o big2 --cache big.pscache \
    --patience -1 >big2.r$r.log 2>&1) &
  eval "p$r=$!"
done
until [ "$(cat big2.r0.log big2.r1.log 2>/dev/null | grep -c 'training, .* validation films')" -ge 2 ]; do
  kill -0 $p0 2>/dev/null && kill -0 $p1 2>/dev/null || { tail -n 3 big2.r*.log; exit 1; }
  sleep 1
done
sleep 20 # a few steps in
for r in 0 1; do
  eval "pid=\$p$r"
  awk -v r=$r '/^Rss:/ {rss = $2} /^Pss:/ {pss = $2} /^Shared_Clean:/ {sh = $2}
    END {printf "  rank %d while training: RSS %.0f MB, PSS %.0f MB, shared clean (the mapped cache) %.0f MB\n", r, rss / 1024, pss / 1024, sh / 1024}' \
    /proc/$pid/smaps_rollup
done
grep -h 'memory-mapped' big2.r0.log | head -1 | sed 's/^/  /'
kill $p0 $p1 2>/dev/null || true
wait 2>/dev/null || true
