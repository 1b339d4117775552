#!/usr/bin/env bash
# One big arrival day through bronze -> silver -> gold (+ online store), each layer one run of the
# real CLI on a fresh lake and instance; wall time and peak RSS (of the run's largest process;
# dbt runs inside the gold step's) from GNU time. Usage: bench/scale_day.sh EVENTS USERS [WORK]
#   bench/scale_day.sh 30000000 300000 /tmp/scale    (docs/BENCHMARKS.md, tenth session)
#   bench/scale_day.sh 112400000 1124000 /work/scale100   (2025-01-01, seed 5: 100,425,373 lines)
# synth holds a day's on-time events packed (~33 bytes each) and merges/writes them in windows
# of arrival time (refinery/synth/generate.py ArrivalDay). Event ids have 8 digits, so a day's
# on-time stream must stay under 100M events (seed 5, 2025-01-01: EVENTS below ~112.6M).
set -euo pipefail
EVENTS=$1
USERS=$2
WORK=${3:-/tmp/refinery-scale-$EVENTS}
REPO=$(cd "$(dirname "$0")/.." && pwd)
UV=${UV:-$(command -v uv || echo "python3 -m uv")}
rm -rf "$WORK"
mkdir -p "$WORK/home"
cp "$REPO/dagster_home/dagster.yaml" "$WORK/home/"
export REFINERY_DATA_DIR=$WORK/data DAGSTER_HOME=$WORK/home
cd "$REPO"
/usr/bin/time -v -o "$WORK/synth.time" $UV run refinery-synth --start 2025-01-01 --days 1 \
    --users "$USERS" --events-per-day "$EVENTS" --seed 5 --fault-rate 0.003 --quiet
echo "landing: $(cat "$WORK"/data/landing/events/*/*.jsonl* | wc -l) event lines," \
    "$(du -sh "$WORK/data/landing" | cut -f1)"
for selection in "group:bronze" "group:silver" "group:gold or group:online"; do
    layer=${selection#group:}
    layer=${layer%% *}
    /usr/bin/time -v -o "$WORK/$layer.time" $UV run dagster asset materialize \
        -m refinery.definitions --select "$selection" --partition 2025-01-01 \
        > "$WORK/$layer.log" 2>&1 || { echo "$layer FAILED: $WORK/$layer.log"; exit 1; }
    echo "$layer: $(grep -E 'Elapsed' "$WORK/$layer.time" | awk '{print $NF}'),"\
         "peak $(grep 'Maximum resident' "$WORK/$layer.time" | awk '{printf "%.2f GB", $NF/1e6}')"
done
