#!/usr/bin/env bash
# A real one-node SLURM on this machine, on loopback only: Debian's slurm-wlm and munge, no
# systemd, no cgroups, no accounting. For trying the cluster workflow without a cluster and for
# the test suite (tests/slurm.rs). Must run as root (munged and slurmd do).
#
#   scripts/slurm-local.sh start    # starts munged, slurmctld and slurmd; prints SLURM_CONF
#   scripts/slurm-local.sh status   # sinfo
#   scripts/slurm-local.sh stop     # stops the three daemons
#
# Then:  export SLURM_CONF=<printed path>  and sbatch, squeue, srun and `workbench queue add
# --slurm PROFILE` talk to it. State, logs and the configuration live in $WORKBENCH_SLURM_DIR
# (default ~/.cache/workbench/slurm); ports 16817 and 16818 unless WORKBENCH_SLURM_PORT is set.
set -euo pipefail

DIR="${WORKBENCH_SLURM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workbench/slurm}"
PORT="${WORKBENCH_SLURM_PORT:-16817}"
CONF="$DIR/slurm.conf"
say() { echo "== slurm-local: $*" >&2; }

need_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    say "installing slurm-wlm and munge (Debian packages, about 10 seconds, once)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >&2 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >&2; }
  else
    echo "slurm-local needs root and Debian's slurm-wlm and munge:  sudo apt-get install -y slurm-wlm munge" >&2
    exit 1
  fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  for d in slurmd slurmctld munged; do
    if pid_alive "$DIR/run/$d.pid"; then
      kill "$(cat "$DIR/run/$d.pid")" 2>/dev/null || true
    fi
  done
  for _ in $(seq 50); do
    pid_alive "$DIR/run/slurmd.pid" || pid_alive "$DIR/run/slurmctld.pid" || pid_alive "$DIR/run/munged.pid" || break
    sleep 0.1
  done
  say "stopped"
}

start() {
  need_packages
  if pid_alive "$DIR/run/slurmctld.pid" && pid_alive "$DIR/run/slurmd.pid" && pid_alive "$DIR/run/munged.pid"; then
    say "already running"
    echo "SLURM_CONF=$CONF"
    return
  fi
  stop >/dev/null 2>&1 || true
  mkdir -p "$DIR"/{munge,spool/ctld,spool/d,log,run}
  chmod 700 "$DIR/munge"
  [ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" >&2
  chmod 600 "$DIR/munge/munge.key"
  # munged refuses to run as root without --force.
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
  local host cpus mem
  host="$(hostname -s)"
  cpus="$(nproc)"
  mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node SLURM on loopback.
ClusterName=workbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
# cred_expire: how long a requeued job waits before it may start again (120 s by default).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to scontrol for an hour.
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  for _ in $(seq 100); do
    if SLURM_CONF="$CONF" sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      say "running: partition local, $cpus CPUs on $host (logs in $DIR/log)"
      echo "SLURM_CONF=$CONF"
      return
    fi
    sleep 0.2
  done
  say "the node did not come up; see $DIR/log/slurmctld.log and $DIR/log/slurmd.log"
  exit 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF="$CONF" sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
