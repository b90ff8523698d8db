#!/usr/bin/env bash
# Submit the nightly pipeline to a long-running Ray cluster, for clusters without Kubernetes (with
# KubeRay use docker/raycronjob.yaml). Cron-friendly: one line per event on stdout, the job's logs
# followed until it ends, and the job's outcome as the exit status.
#
#   0 2 * * *  RAY_JOB_ADDRESS=http://head:8265 /srv/embedpipe/scripts/nightly_submit.sh >> /var/log/embedpipe-nightly.log 2>&1
#
# Two runs never overlap: the script holds an flock on $EMBEDPIPE_LOCK while the job runs (a run
# that finds it held exits 75 without submitting), and the submission id names the day, so Ray
# itself refuses a second job for the same night even from another machine.
#
# Environment: RAY_JOB_ADDRESS (required; the job server, e.g. http://head:8265),
# EMBEDPIPE_SPEC (default pipelines/nightly.yaml), EMBEDPIPE_LOCK (default /tmp/embedpipe-nightly.lock).
# Extra arguments go to `embedpipe run` (e.g. --set index.append=false).
set -euo pipefail

project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
spec="${EMBEDPIPE_SPEC:-pipelines/nightly.yaml}"
lock="${EMBEDPIPE_LOCK:-/tmp/embedpipe-nightly.lock}"
address="${RAY_JOB_ADDRESS:?set RAY_JOB_ADDRESS to the Ray job server, e.g. http://head:8265}"
stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }

exec 9>>"$lock"
if ! flock --nonblock 9; then
    echo "$(stamp) another nightly run holds $lock; not starting a second one"
    exit 75
fi

cd "$project"
id="embedpipe-nightly-$(date -u +%Y%m%d)"
echo "$(stamp) submitting $spec as $id to $address"
status=0
ray job submit --address "$address" --working-dir . --submission-id "$id" \
    -- python -m embedpipe run "$spec" "$@" || status=$?
echo "$(stamp) $id finished with status $status"
exit "$status"
