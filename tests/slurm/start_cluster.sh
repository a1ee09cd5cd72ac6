#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost (munge + slurmctld + slurmd, 2 fake GPUs)
# so tests can run `snakemake --profile slurm` against it. See shared/spec/slurm-local.md.
# Exit codes: 0 = cluster up (node idle); 3 = cannot run here (not root, no packages, foreign
# config) -- one-line reason on stderr, a test should skip; 1 = bring-up failed (see logs).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # daemons live in sbin; test runners may strip it

MARK="# written by tests/slurm/start_cluster.sh"
HOST=$(hostname -s)
CONF=/etc/slurm/slurm.conf       # fixed path: the plugin drops SLURM_CONF inside jobs
GPUDIR=/var/lib/slurm-fakegpu    # fake GPU device files live here
HERE=$(cd "$(dirname "$0")" && pwd)

skip() { echo "start_cluster.sh: $*" >&2; exit 3; }
fail() { echo "start_cluster.sh: $*" >&2; exit 1; }
# alive PIDFILE NAME: the pid in PIDFILE is running and really is NAME (not a reused pid).
alive() { [[ -s $1 && $(cat "/proc/$(cat "$1")/comm" 2>/dev/null) == "$2" ]]; }
node_state() { timeout 5 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1; }

[[ $(id -u) -eq 0 ]] || skip "needs root (daemons, /etc/slurm)"

# Fast path: our cluster is already running and the node is usable.
if grep -qxF "$MARK" "$CONF" 2>/dev/null && alive /run/munge/munged.pid munged \
   && alive /run/slurm/slurmctld.pid slurmctld && alive /run/slurm/slurmd.pid slurmd \
   && [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; then
  exit 0
fi

# Never clobber a SLURM config someone else wrote: only one such cluster per machine.
if [[ -e $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
  skip "$CONF exists and was not written by this script"
fi

# Install only what is missing; apt is slow and may be offline.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || skip "slurm not installed and no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq slurmctld slurmd slurm-client munge >/tmp/slurm-apt.log 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq slurmctld slurmd slurm-client munge; } \
    >>/tmp/slurm-apt.log 2>&1; } || skip "apt-get install of slurm/munge failed (see /tmp/slurm-apt.log)"
fi

# Half-started leftovers (stale pids, daemons on an old config) would confuse the checks below.
"$HERE/stop_cluster.sh" >/dev/null 2>&1 || true

# munge authenticates every SLURM RPC; it needs a private key owned by the munge user.
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
runuser -u munge -- munged --force   # no systemd, no sudo here

# Fake GPUs: must be character devices (or links to one), else no CUDA_VISIBLE_DEVICES is set.
mkdir -p "$GPUDIR"
for i in 0 1; do
  [[ -c $GPUDIR/fakegpu$i ]] || { rm -f "$GPUDIR/fakegpu$i"
    mknod "$GPUDIR/fakegpu$i" c 1 3 2>/dev/null || ln -s /dev/null "$GPUDIR/fakegpu$i"; }
done

# Advertise less memory than the machine has: a RealMemory above what slurmd sees drains the node.
MEM=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
mkdir -p /etc/slurm /run/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >"$CONF" <<CONFEOF
$MARK
ClusterName=local
SlurmctldHost=$HOST
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName=$HOST CPUs=$(nproc) RealMemory=$MEM Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONFEOF
printf '%s\nNodeName=%s Name=gpu File=%s/fakegpu[0-1]\n' "$MARK" "$HOST" "$GPUDIR" >/etc/slurm/gres.conf

# Controller first so slurmd can register. Both daemonize. -c drops saved node/job state,
# so a stale "idle" (or "drained") from the last run cannot fake readiness below.
slurmctld -c || fail "slurmctld failed to start; see /var/log/slurm/slurmctld.log"
slurmd || fail "slurmd failed to start; see /var/log/slurm/slurmd.log"

# Wait (bounded) for the node to register; resume it if an earlier run left it drained.
for _ in $(seq 60); do
  state=$(node_state || true)
  case $state in
    idle|mixed|allocated) exit 0 ;;   # a trailing * means slurmd not responding yet
    drain*|down*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
fail "node $HOST not idle after 30 s (state '${state:-none}'); see /var/log/slurm/slurmctld.log, slurmd.log; reason: $(timeout 5 sinfo -h -R 2>/dev/null | head -n1)"
