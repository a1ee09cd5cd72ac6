#!/usr/bin/env bash
# Stop the daemons started by start_cluster.sh (slurmd, slurmctld, munged), by their pid files.
# Tolerant: anything not running is skipped. Always exits 0 unless a daemon refuses to die (1).
set -uo pipefail

# Cancel leftover jobs first, so no slurmstepd/job processes outlive the cluster.
if command -v scancel >/dev/null && [[ -s /run/slurm/slurmctld.pid ]] \
   && kill -0 "$(cat /run/slurm/slurmctld.pid)" 2>/dev/null; then
  timeout 5 scancel --quiet --user=root >/dev/null 2>&1 || true
fi

rc=0
# Reverse start order: slurmd, slurmctld (both talk via munge), then munged.
for pidfile in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
  [[ -s $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done   # up to 10 s
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null; sleep 0.5
      kill -0 "$pid" 2>/dev/null && { echo "stop_cluster.sh: pid $pid ($pidfile) still alive" >&2; rc=1; }
    fi
  fi
  rm -f "$pidfile"
done
exit $rc
