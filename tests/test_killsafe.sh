#!/usr/bin/env bash
# test_killsafe.sh CLI SHARED_DATA WORKDIR — training killed with SIGKILL at random points always
# leaves a loadable best model (when one was written) and a resumable run; `--resume` then
# completes. Nothing is written outside the folders the user named (source films hashed before
# and after, cwd and $TMPDIR must stay empty), and `split` never moves or rewrites a source film.
# Random kill times come from KILLSAFE_SEED (printed; set it to replay a failure).
set -uo pipefail
cli="$1"
data="$2"
work="$3"
seed="${KILLSAFE_SEED:-$(( $(date +%s) % 100000 ))}"
RANDOM=$seed
echo "killsafe: seed $seed (KILLSAFE_SEED=$seed to replay)"
fail() { echo "FAIL: $*"; exit 1; }

rm -rf "$work"
mkdir -p "$work/src/NORMAL" "$work/src/PNEUMONIA" "$work/cwd" "$work/tmp"
# A tiny real set: 6 NORMAL + 6 PNEUMONIA Kermany films (copies: this source folder is writable,
# so any write into it would be seen).
for c in NORMAL PNEUMONIA; do
  ls "$data/kaggle/$c" | head -6 | while read -r f; do cp "$data/kaggle/$c/$f" "$work/src/$c/"; done
done
snapshot() { (cd "$work/src" && find . -printf '%p %s %T@ %m\n' | sort && find . -type f -exec sha256sum {} + | sort); }
before="$(snapshot)"
export TMPDIR="$work/tmp"
cd "$work/cwd" || exit 1

# --- split: never into the source, never touching a film -------------------------------------
"$cli" split ../src -o ../src/NORMAL/out >/dev/null 2>&1 && fail "split accepted an output folder inside the source"
"$cli" split ../src -o ../split --seed 3 --fractions 0.5,0.25,0.25 --materialize >split.log 2>&1 || { cat split.log; fail "split"; }
rm -f split.log
[ -f ../split/manifest.csv ] || fail "no manifest"
"$cli" split ../src -o ../split --seed 4 >/dev/null 2>&1 && fail "split overwrote an existing manifest without --force"
[ "$(snapshot)" = "$before" ] || fail "split changed the source folder"

# --- a model check: classify when the command exists, else evaluate -------------------------
check_model() { # model label
  local m="$1" what="$2" out
  if "$cli" help 2>&1 | grep -qw classify; then
    out=$("$cli" classify --model "$m" "$work/src/NORMAL" 2>&1) || { echo "$out"; fail "$what: classify with $m"; }
  else
    rm -rf "$work/eval"
    out=$("$cli" evaluate --model "$m" --manifest ../split/manifest.csv --split all --limit 2 -o "$work/eval" \
          --threads 2 2>&1) || { echo "$out"; fail "$what: evaluate with $m"; }
  fi
  echo "  $what: $(basename "$m") loads and classifies"
}

train_args=(--manifest ../split/manifest.csv -o ../run --epochs 4 --size 32 --batch 4 --threads 2 --seed 1)
mtime() { stat -c %Y.%N "$1" 2>/dev/null || stat -c %Y "$1" 2>/dev/null || echo none; }
kills=0
# round 1: kill at a random point soon after the start (cache building, first epoch);
# rounds 2-4: wait until the run writes a new checkpoint, then kill a random 0-2.5 s later
# (the next epoch, or while best.safetensors / last.ckpt are being written).
for round in 1 2 3 4; do
  resume=()
  [ -f ../run/last.ckpt ] && resume=(--resume)
  prev="$(mtime ../run/last.ckpt)"
  "$cli" train "${train_args[@]}" "${resume[@]}" >"../train$round.log" 2>&1 &
  pid=$!
  if [ "$round" -eq 1 ]; then
    d=$(( RANDOM % 40 + 5 ))
  else
    for _ in $(seq 1 600); do   # at most 120 s
      [ "$(mtime ../run/last.ckpt)" != "$prev" ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    d=$(( RANDOM % 26 ))
  fi
  sleep "$(( d / 10 )).$(( d % 10 ))"
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    echo "round $round: SIGKILL $(( d / 10 )).$(( d % 10 ))s after $([ "$round" -eq 1 ] && echo start || echo 'a checkpoint') ${resume[*]}"
  else
    wait "$pid"; rc=$?
    echo "round $round: finished before the kill, rc $rc"
    [ $rc -eq 0 ] || { cat "../train$round.log"; fail "train exited $rc"; }
  fi
  if [ -f ../run/best.safetensors ]; then
    check_model ../run/best.safetensors "after round $round"
  else
    echo "  after round $round: no best.safetensors yet"
  fi
  ls ../run 2>/dev/null | grep -v -E '^(best\.safetensors|last\.ckpt|history\.(json|csv)|cache-[0-9]+\.pscache)$' \
    | grep -v -E '\.tmp[0-9]+(\.[A-Za-z0-9]{6})?$' | grep . && fail "unexpected files in the run folder"
done
[ -f ../run/last.ckpt ] || fail "no last.ckpt after 4 rounds (the kills came before any checkpoint)"

# --- resume to the end ----------------------------------------------------------------------
resume=()
[ -f ../run/last.ckpt ] && resume=(--resume)
"$cli" train "${train_args[@]}" "${resume[@]}" >../train_final.log 2>&1 || { cat ../train_final.log; fail "final train ${resume[*]}"; }
[ -f ../run/best.safetensors ] || fail "no best.safetensors after the run completed"
check_model ../run/best.safetensors "after completion"
grep -q '"epoch"' ../run/history.json || fail "history.json has no epochs"
# the killed rounds' temporaries (<file>.tmp<pid>) are swept by the next run, nothing else is left
leftover=$(ls ../run | grep -E '\.tmp' || true)
[ -z "$leftover" ] || fail "temporaries of killed runs left in the run folder: $leftover"

# --- nothing written elsewhere ----------------------------------------------------------------
[ "$(snapshot)" = "$before" ] || fail "the source folder changed"
[ -z "$(ls -A "$work/cwd")" ] || { ls -la "$work/cwd"; fail "files written into the working directory"; }
[ -z "$(ls -A "$work/tmp")" ] || { ls -la "$work/tmp"; fail "files left in TMPDIR"; }
echo "killsafe: $kills SIGKILLs, best model loadable after each, resume completed, source untouched"
exit 0
