# Shell functions shared by the registered benchmark scripts (sourced; they set PY first and run from the repository
# root). Each step is skipped when its output exists, so a cut-off script continues where it stopped.

# The version-2 runs whose stage 1 and judge the registered ablations reuse, and the reference sets they run on.
FORWARD_RUN=bench/results/cpu-96px-v2              # Kvasir-SEG -> CVC-ClinicDB (and the positive control)
REVERSE_RUN=bench/results/cpu-pairs-cvc-to-kvasir-v2  # CVC-ClinicDB -> Kvasir-SEG
ABLATION_SETS=K10_seed0,K10_seed1,K10_seed2,K5_seed0,K5_seed1,K5_seed2

# pair_statistics RUN: bench/pair_statistics.py on a benchmark folder -> bench/results/pair-statistics-NAME.json
pair_statistics() {
  local statistics=bench/results/pair-statistics-$(basename "$1").json
  [ -f "$statistics" ] || "$PY" bench/pair_statistics.py "$1" --out "$statistics"
}

# compare NAME RUN_A:METHOD RUN_B:METHOD ...: paired differences over the three reference seeds of K = 10 and of
# K = 5 -> bench/results/NAME-K10.json and NAME-K5.json
compare() {
  local name=$1; shift
  for k in 10 5; do
    [ -f "bench/results/$name-K$k.json" ] || "$PY" bench/compare_runs.py "$@" \
      --sets "K${k}_seed0,K${k}_seed1,K${k}_seed2" --out "bench/results/$name-K$k.json"
  done
}

# resume OUT: --resume when OUT holds a cut-off run
resume() { [ -f "$1/run/config.json" ] && echo --resume || true; }

# polyp DATA OUT [bench arguments...]: the polyp layout at DATA, stage 1 and the judge of $FORWARD_RUN reused.
polyp() {
  local data=$1 out=$2; shift 2
  [ -f "$out/results.json" ] || "$PY" -m AlignFlowLib.cli bench polyp --data "$data" --preset cpu --device cpu \
    --out "$out" $(resume "$out") --reuse-stage1 "$FORWARD_RUN" --references "$ABLATION_SETS" --progress jsonl "$@"
}

# reverse_pair OUT [bench arguments...]: CVC-ClinicDB -> Kvasir-SEG folders, stage 1 and the judge of $REVERSE_RUN
# reused.
reverse_pair() {
  local out=$1 folders=bench/results/pairs-data-cvc-to-kvasir; shift
  [ -d "$folders/test" ] || { echo "run bench/reverse-pair-cpu.sh first: it writes $folders" >&2; exit 2; }
  [ -f "$out/results.json" ] || "$PY" -m AlignFlowLib.cli bench pairs --source "$folders/source" \
    --source-val "$folders/source_val" --pool "$folders/pool" --test "$folders/test" --preset cpu --device cpu \
    --out "$out" $(resume "$out") --reuse-stage1 "$REVERSE_RUN" --references "$ABLATION_SETS" \
    --progress jsonl "$@"
}
