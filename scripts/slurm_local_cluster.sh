#!/usr/bin/env bash
# Start a single-node SLURM cluster with job accounting on this machine, from Debian's packages (slurm-wlm,
# slurmdbd, munge, mariadb-server), for the integration tests `make slurm-test`. Loopback only; needs root.
# Accounting (slurmdbd on a local MariaDB) is what makes `sacct` work, and submitit learns a job's state
# (COMPLETED, FAILED, CANCELLED, TIMEOUT) only through sacct: without it a dead job is waited on forever.
#   bash scripts/slurm_local_cluster.sh          # install if needed, configure, start, wait until idle
#   bash scripts/slurm_local_cluster.sh stop     # stop the daemons this script started (by their PIDs)
# Idempotent: a running cluster is reused. It writes /etc/slurm/{slurm,slurmdbd}.conf only when they are absent
# or were written by this script (first line MARK below); someone else's configuration is never rewritten.
set -euo pipefail

MARK="# written by rsbench scripts/slurm_local_cluster.sh"
STATE=/run/rsbench-slurm            # PID files of the daemons this script started
DB_RUN=$STATE/mysql                 # MariaDB socket, owned by the mysql user
DB_SOCK=$DB_RUN/mysqld.sock
DB_PASS=rsbench-local-only           # loopback-only test database; not a secret
mkdir -p "$STATE"

stop_ours() {
  local pidfile pid
  for pidfile in "$STATE"/slurmd.pid "$STATE"/slurmctld.pid "$STATE"/slurmdbd.pid "$STATE"/mysqld.pid \
                 "$STATE"/munged.pid; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$pidfile"
  done
}

if [ "${1:-start}" = "stop" ]; then
  stop_ours
  exit 0
fi

need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v slurmdbd >/dev/null || need+=(slurmdbd)
command -v mariadbd >/dev/null || need+=(mariadb-server)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && sacct -n -X -S now 2>/dev/null >/dev/null; then
  echo "slurm already running with accounting: $(sinfo -h -o '%P %D %T')"; exit 0
fi

ours() {  # $1: a config path; true when absent or written by this script (earlier versions began ClusterName=rsbench)
  [ ! -e "$1" ] || [ "$(head -n 1 "$1")" = "$MARK" ] || [ "$(head -n 1 "$1")" = "ClusterName=rsbench" ]
}
for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
  if ! ours "$conf"; then
    echo "error: $conf exists and was not written by this script; refusing to rewrite it" \
         "(move it away to let this script configure a test cluster)" >&2
    exit 1
  fi
done

started() {  # $1: name; true when the PID in its file is alive
  [ -s "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null
}
wait_for() {  # $1: what; $2...: a command that succeeds once it is up
  local what=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "error: $what did not come up" >&2
  return 1
}

# munge: one key, daemon as the munge user
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0400 /etc/munge/munge.key
if ! started munged && ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for munged test -s /run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
# MariaDB for slurmdbd: its own data dir and socket, no TCP
DB_DIR=/var/lib/rsbench-slurm/mysql
if ! started mysqld; then
  if [ ! -d "$DB_DIR/mysql" ]; then
    mkdir -p "$DB_DIR"; chown mysql:mysql "$DB_DIR"
    mariadb-install-db --user=mysql --datadir="$DB_DIR" --auth-root-authentication-method=socket >/dev/null
  fi
  mkdir -p "$DB_RUN"; chown mysql:mysql "$DB_RUN"
  nohup mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCK" --skip-networking \
    --pid-file="$DB_RUN/mysqld.pid" >>/var/log/slurm/rsbench-mariadb.log 2>&1 &
  echo $! > "$STATE/mysqld.pid"
  wait_for MariaDB mariadb --socket="$DB_SOCK" -e "select 1"
fi
mariadb --socket="$DB_SOCK" <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

host=$(hostname -s)
cat > /etc/slurm/slurmdbd.conf <<CONF
${MARK}
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=${DB_PASS}
LogFile=/var/log/slurm/slurmdbd.log
PidFile=${STATE}/slurmdbd.pid
CONF
chmod 0600 /etc/slurm/slurmdbd.conf
# slurmdbd reaches MariaDB through the default socket path of the client library
mkdir -p /run/mysqld; ln -sf "$DB_SOCK" /run/mysqld/mysqld.sock
if ! started slurmdbd; then
  slurmdbd
  wait_for slurmdbd bash -c "ss -ltn 2>/dev/null | grep -q ':6819 ' || (exec 3<>/dev/tcp/127.0.0.1/6819)"
fi

# slurm.conf for this one node (CPUs and memory as slurmd sees them)
node_line=$(slurmd -C | head -n 1 | sed -E "s/^NodeName=[^ ]+/NodeName=${host} NodeAddr=127.0.0.1/")
cat > /etc/slurm/slurm.conf <<CONF
${MARK}
ClusterName=rsbench
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobRequeue=1
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
${node_line} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
sacctmgr -i add cluster rsbench >/dev/null 2>&1 || true

started slurmctld || slurmctld -c
started slurmd || slurmd
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && sacct -n -X -S now >/dev/null 2>&1; then
    echo "slurm is up with accounting: $(sinfo -h -o '%P %D %T %c CPUs %m MB')"; exit 0
  fi
  sleep 1
done
echo "slurm did not come up; see /var/log/slurm/" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log >&2 || true
exit 1
