#!/usr/bin/env bash
# Which JSON library parses a safetensors header fastest (issue 17): jansson (what PneumoScope
# links), json-c and cJSON on the bundled model's header, one program per library (jansson and
# json-c clash in one process). Needs libjansson-dev, libjson-c-dev and libcjson-dev (the last two
# only for this comparison).      tests/bench/bench_json.sh [MODEL.safetensors] [N]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:-$src/sample_data/models/pneumoscope-binary.safetensors}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for lib in JANSSON:jansson JSONC:json-c CJSON:libcjson; do
  cc -O2 -std=gnu11 -DLIB_${lib%%:*} "$src/tests/bench/bench_json.c" -o "$tmp/${lib%%:*}" $(pkg-config --cflags --libs "${lib#*:}")
  "$tmp/${lib%%:*}" "$model" "${2:-2000}"
done | awk -F'\t' '{ if (NR == 1) { base = $2; printf "header: %d bytes; best of 3 rounds\n", $4 }
                      printf "%-16s %8.1f us per header  x%.2f of jansson'"'"'s time  (walk checksum %s)\n", $1, $2, $2 / base, $3 }'
