# Shell functions shared by the registered benchmark scripts (sourced; they set PY first and run from the repository
# root). Each step is skipped when its output exists, so a cut-off script continues where it stopped.

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
