#!/usr/bin/env bash
# Stop the daemons started by start_cluster.sh (slurmd, slurmctld, munged), by their pid files.
# Tolerant: whatever is not running is skipped. Exit 0, or 1 if a daemon survives SIGKILL.
set -uo pipefail   # no -e: keep going past daemons that are already gone
export PATH="$PATH:/usr/sbin:/sbin"

# alive PID NAME: PID runs and really is NAME (never kill a reused pid from a stale pid file).
alive() { [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }

# Cancel leftover jobs first so no slurmstepd/job processes outlive the cluster.
if [[ -s /run/slurm/slurmctld.pid ]] && alive "$(cat /run/slurm/slurmctld.pid)" slurmctld; then
  timeout 5 scancel --quiet --user=root >/dev/null 2>&1 || true
fi

rc=0
# Reverse start order: slurmd, slurmctld (both need munge to talk), then munged.
for entry in /run/slurm/slurmd.pid:slurmd /run/slurm/slurmctld.pid:slurmctld /run/munge/munged.pid:munged; do
  pidfile=${entry%%:*} name=${entry##*:}
  [[ -s $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if alive "$pid" "$name"; then
    kill -TERM "$pid"
    for _ in $(seq 50); do alive "$pid" "$name" || break; sleep 0.2; done   # slurmctld saves state: ~4 s
    if alive "$pid" "$name"; then
      kill -KILL "$pid"; sleep 0.5
      alive "$pid" "$name" && { echo "stop_cluster.sh: $name (pid $pid) still alive" >&2; rc=1; }
    fi
  fi
  rm -f "$pidfile"
done
exit $rc
