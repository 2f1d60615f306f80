#!/usr/bin/env bash
# Baseline: graphile-worker no-op job drain rate on a local PostgreSQL.
#
# For each configuration and run: create a fresh database, install the
# graphile-worker schema, enqueue JOBS no-op jobs in one transaction
# (graphile_worker.add_jobs), start one worker process with a no-op task and
# time until the queue is empty (see drain.js), then drop the database.
#
# Env: PGHOST (127.0.0.1) PGPORT (5432) PGUSER (postgres) JOBS (20000) RUNS (3)
#      CONFIGS (space-separated "concurrency:mode"; mode = default|batched)
#      DRAIN_MAX_S (time cap per drain, 60; a capped drain reports the rate of
#      the jobs done within the cap and "capped_runs" counts such runs)
set -euo pipefail

cd "$(dirname "$0")"

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
JOBS="${JOBS:-20000}"
RUNS="${RUNS:-3}"
CONFIGS="${CONFIGS:-1:default 32:default 32:batched}"
DRAIN_MAX_S="${DRAIN_MAX_S:-60}"
DB="gw_bench_$$"
URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${DB}"

[ -d node_modules/graphile-worker ] || npm ci --no-audit --no-fund >&2

drop_db() { dropdb --if-exists "$DB" >/dev/null 2>&1 || true; }
trap drop_db EXIT

GW_VERSION="$(node -p 'require("graphile-worker/package.json").version')"
PG_VERSION="$(psql -d postgres -Atc 'show server_version')"
echo "graphile-worker ${GW_VERSION}, node $(node --version), PostgreSQL ${PG_VERSION}, $(nproc) CPUs, ${JOBS} jobs, ${RUNS} runs per config" >&2

summary=()
for cfg in $CONFIGS; do
  conc="${cfg%%:*}"
  mode="${cfg#*:}"
  rates=()
  rates_first=()
  capped=0
  for run in $(seq 1 "$RUNS"); do
    drop_db
    createdb "$DB"
    node node_modules/graphile-worker/dist/cli.js -c "$URL" --schema-only >/dev/null
    psql -d "$DB" -v ON_ERROR_STOP=1 -q -1 -Atc "
      select count(*) from graphile_worker.add_jobs(array(
        select row('noop', '{}'::json, null, null, null, null, null, null)::graphile_worker.job_spec
        from generate_series(1, ${JOBS})));" >/dev/null
    line="$(timeout "$((${DRAIN_MAX_S%.*} + 60))" node drain.js "$URL" "$JOBS" "$conc" "$mode" "$DRAIN_MAX_S" | tail -n 1)"
    echo "  run ${run}: ${line}" >&2
    rates+=("$(node -p "JSON.parse(process.argv[1]).drain_per_s" "$line")")
    if [ "$(node -p "JSON.parse(process.argv[1]).capped" "$line")" = true ]; then capped=$((capped + 1)); fi
    rates_first+=("$(node -p "JSON.parse(process.argv[1]).drain_per_s_from_first_job" "$line")")
    drop_db
  done
  med="$(printf '%s\n' "${rates[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
  med_first="$(printf '%s\n' "${rates_first[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
  echo "concurrency=${conc} mode=${mode}: median ${med} jobs/s (${med_first} jobs/s from first job) over ${RUNS} runs" >&2
  summary+=("{\"bench\":\"graphile-worker\",\"version\":\"${GW_VERSION}\",\"jobs\":${JOBS},\"concurrency\":${conc},\"mode\":\"${mode}\",\"runs\":${RUNS},\"capped_runs\":${capped},\"drain_per_s\":${med},\"drain_per_s_from_first_job\":${med_first}}")
done

# One JSON line per configuration (median of RUNS), last on stdout.
printf '%s\n' "${summary[@]}"
