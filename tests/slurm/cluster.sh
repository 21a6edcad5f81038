#!/usr/bin/env bash
# A throwaway single-node SLURM on localhost, to try profiles/slurm (and to test it).
#
#   sudo tests/slurm/cluster.sh start  [DIR]   # install if needed, start, wait until the node is idle
#   tests/slurm/cluster.sh status [DIR]
#   sudo tests/slurm/cluster.sh stop   [DIR]   # cancel jobs, stop exactly the daemons it started
#
# DIR (default $WHISPER_SPI_SLURM_DIR or /tmp/whisper-spi-slurm) holds everything: slurm.conf,
# gres.conf, a private munge key and socket, state, logs and the pid file. A system munged is
# left alone, and the cluster listens on its own ports (16817-16818), not SLURM's.
# One file goes outside DIR: /etc/slurm/slurm.conf, a symlink to DIR/etc/slurm.conf, because the
# `srun` that Snakemake's jobstep runs inside each job drops SLURM_CONF and only finds the default
# path. If /etc/slurm/slurm.conf exists and is not such a link (a real SLURM), start refuses.
# stop removes the link.
# The node is the machine itself (layout from `slurmd -C`), with one fake GPU (gres gpu:1 backed
# by /dev/null: jobs asking for a GPU see CUDA_VISIBLE_DEVICES=0) and no accounting database.
# Needs root (slurmd runs jobs as their submitter); Debian/Ubuntu packages are installed with apt.
set -euo pipefail

DIR=$(realpath -m "${2:-${WHISPER_SPI_SLURM_DIR:-/tmp/whisper-spi-slurm}}")
CONF="$DIR/etc/slurm.conf"
PIDS="$DIR/run/daemons.pid"  # "<name> <pid>" per daemon started by this script
CTLD_PORT=${WHISPER_SPI_SLURM_PORT:-16817}  # not SLURM's 6817, so a real SLURM is never hit
TIMEOUT=${WHISPER_SPI_SLURM_TIMEOUT:-60}    # seconds to wait for the node to become idle
PACKAGES=(slurmctld slurmd slurm-client munge)
HOSTS_MARK="# whisper-spi test SLURM"
MARK="tests/slurm/cluster.sh"  # in the first line of every slurm.conf it writes
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF="$CONF"

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*"; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "'$1' needs root (slurmd runs jobs as their user): sudo $0 $1 ${2:-}"
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} (SLURM >= 22.05) yourself"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
}

# The live "<name> <pid>" lines of the pid file (a pid reused by another program is not ours).
live_daemons() {
  [ -f "$PIDS" ] || return 0
  local name pid
  while read -r name pid; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && echo "$name $pid"
  done <"$PIDS"
  return 0
}

node_state() { sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1; }

ensure_hostname_resolves() {
  getent hosts "$NODE" >/dev/null && return 0
  log "adding $NODE to /etc/hosts (removed again by stop)"
  echo "127.0.0.1 $NODE $HOSTS_MARK" >>/etc/hosts
  touch "$DIR/run/hosts-added"
}

write_config() {
  local node_line real_mem mem
  # slurmd -C knows the socket/core layout; a hand-written CPUs=N line makes the node INVAL.
  node_line=$(slurmd -C | head -n1)
  real_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
  mem=$((real_mem * 9 / 10))  # below the real memory, or slurmd reports a smaller node
  node_line=${node_line/RealMemory=$real_mem/RealMemory=$mem}
  mkdir -p "$DIR"/{etc,run,log,state/ctld,state/d,munge}
  cat >"$CONF" <<EOF
# Written by whisper-spi $MARK: a single-node test cluster. Do not edit.
ClusterName=whisperspi
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
PlugStackConfig=$DIR/etc/plugstack.conf
# No cgroups in containers and small VMs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# No slurmdbd: sacct cannot see jobs, so Snakemake polls with squeue, which shows a finished
# job for MinJobAge seconds; keep it >= 3x slurm-init-seconds-before-status-checks.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
$node_line Gres=gpu:1 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  # A GPU without a device file is dropped and the node goes INVAL; /dev/null stands in.
  printf 'AutoDetect=off\nName=gpu File=/dev/null\n' >"$DIR/etc/gres.conf"
  : >"$DIR/etc/plugstack.conf"
}

# Start "$@" in the background, detached from our session, and record its pid under $1's name.
spawn() {
  local name=$1
  shift
  setsid "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null &
  echo "$name $!" >>"$PIDS"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: fails when a started daemon died
  local deadline=$((SECONDS + $1)) what=$2 name pid
  shift 2
  until "$@" >/dev/null 2>&1; do
    while read -r name pid; do
      kill -0 "$pid" 2>/dev/null || { echo "cluster.sh: $name ($pid) exited" >&2; return 1; }
    done <"$PIDS"
    [ $SECONDS -lt $deadline ] || { echo "cluster.sh: timed out waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

show_logs() {  # the SLURM daemons' logs (their .out files repeat them) and munged's output
  local f
  for f in "$DIR"/log/*.log "$DIR"/log/munged.out; do
    [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 15 "$f" >&2; }
  done
  return 0
}

node_idle() { [[ "$(node_state)" == idle* ]]; }

# /etc/slurm/slurm.conf must be absent, a dangling link, or our link: never a real SLURM's file,
# nor the link of another cluster.sh cluster (which stop would have removed: it is running).
check_system_conf() {
  [ -e "$SYSTEM_CONF" ] || return 0
  [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ] && return 0
  if [ -L "$SYSTEM_CONF" ] && head -n1 "$SYSTEM_CONF" | grep -qF "$MARK"; then
    die "$SYSTEM_CONF is the link of another test cluster; stop it first:" \
      "$0 stop $(dirname "$(dirname "$(readlink "$SYSTEM_CONF")")")"
  fi
  die "$SYSTEM_CONF exists and was not written by $MARK (a real SLURM?); not touching it"
}

# munged, slurmctld, slurmd, each waited for; returns 1 (daemons left running) on failure.
launch() {
  # A private munge: own key and socket, so a system munged (if any) is untouched.
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 755 "$DIR/munge"  # users' sbatch/squeue need the socket
  chmod 400 "$DIR/munge/munge.key"
  spawn munged munged --foreground --force \
    --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed"
  wait_for 10 munged test -S "$DIR/munge/munge.socket" || return 1
  spawn slurmctld slurmctld -D -c -f "$CONF"
  wait_for 20 slurmctld scontrol ping || return 1
  spawn slurmd slurmd -D -f "$CONF"
  wait_for "$TIMEOUT" "node $NODE to be idle" node_idle || return 1
  # Each recorded pid must be its daemon (setsid execs it: no fork in between).
  [ "$(live_daemons | wc -l)" -eq 3 ] || { echo "cluster.sh: pid file mismatch" >&2; return 1; }
}

start() {
  need_root start "${1:-}"
  install_packages
  NODE=$(slurmd -C | sed -n 's/^NodeName=\([^ ]*\).*/\1/p')
  if [ -n "$(live_daemons)" ]; then
    node_idle || node_state | grep -q . || die "daemons of $DIR run but the node does not answer"
    log "already running ($DIR); node $NODE is $(node_state)"
    return 0
  fi
  check_system_conf
  # A fresh cluster, no state from an earlier run; but never wipe a directory that is not ours.
  if [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && ! grep -qsF "$MARK" "$CONF"; then
    die "$DIR is not empty and not a cluster.sh directory; choose another DIR"
  fi
  rm -rf "$DIR"
  write_config
  ensure_hostname_resolves
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -sfn "$CONF" "$SYSTEM_CONF"
  : >"$PIDS"
  if ! launch; then
    show_logs
    echo "cluster.sh: start failed; stopping what it started" >&2
    stop
    exit 1
  fi
  log "up: node $NODE idle ($(sinfo --noheader --format='%c CPUs, %m MB, gres %G')); $DIR"
}

# SIGTERM the "<name> <pid>" lines given, wait for them to exit (SIGKILL after 15 s).
terminate() {
  local name pid deadline=$((SECONDS + 15))
  [ -n "$1" ] || return 0
  while read -r name pid; do kill -TERM "$pid" 2>/dev/null || true; done <<<"$1"
  while read -r name pid; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    log "stopped $name ($pid)"
  done <<<"$1"
}

stop() {
  need_root stop "${1:-}"
  local running deadline
  running=$(live_daemons)
  if [ -z "$running" ]; then
    log "not running ($DIR)"
  else
    # Jobs first, so that no slurmstepd outlives its slurmd.
    if scontrol ping >/dev/null 2>&1; then
      squeue --noheader --format=%i 2>/dev/null | xargs -r scancel 2>/dev/null || true
      deadline=$((SECONDS + 20))
      while [ -n "$(squeue --noheader --states=PENDING,RUNNING,COMPLETING 2>/dev/null)" ] &&
        [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
    # The SLURM daemons, then munged, which they need to the end.
    terminate "$(grep -v '^munged ' <<<"$running")"
    terminate "$(grep '^munged ' <<<"$running")"
  fi
  rm -f "$PIDS"
  if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
    rm -f "$SYSTEM_CONF"
  fi
  if [ -f "$DIR/run/hosts-added" ]; then
    sed -i "/$HOSTS_MARK/d" /etc/hosts
    rm -f "$DIR/run/hosts-added"
  fi
}

status() {
  local running
  running=$(live_daemons)
  if [ -z "$running" ]; then
    echo "stopped ($DIR)"
    return 3
  fi
  echo "running ($DIR): $(tr '\n' ' ' <<<"$running")"
  sinfo --Node --long 2>&1 || true
  squeue 2>&1 || true
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 2 ;;
esac
