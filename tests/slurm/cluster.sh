#!/usr/bin/env bash
# A real single-node Slurm cluster for the test suite (tests/test_slurm.py): munge, MariaDB,
# slurmdbd (accounting, so sacct works), slurmctld and slurmd, one node = this machine with its real
# CPUs and memory and two fake GPUs (GRES gpu:2 on symlinks to /dev/null), one partition `debug`,
# one account `cvep`. Debian packages, installed when missing. As root, without systemd.
#
#   sudo tests/slurm/cluster.sh start    # install if needed, write the config, start the daemons (idempotent)
#   sudo tests/slurm/cluster.sh status   # daemons and sinfo
#   sudo tests/slurm/cluster.sh stop     # cancel all jobs, stop the daemons (reverse order)
#   tests/slurm/cluster.sh env           # the line to source to use it: export SLURM_CONF=...
#   sudo tests/slurm/cluster.sh install  # only the packages
#
# Everything (config, state, logs, MariaDB data, munge key) lives in $CVEP_SLURM_DIR
# (default /tmp/caduceus-vep-slurm). Clients find the cluster through SLURM_CONF=$CVEP_SLURM_DIR/etc/slurm.conf
# and through a link /etc/slurm/slurm.conf -> it (made only where no slurm.conf exists; removed by stop):
# Snakemake's jobstep plugin drops SLURM_* variables before its srun inside a job, so srun there
# needs the default location, as on a real cluster. Ports: $CVEP_SLURM_PORT (default 16817) for slurmctld,
# +1 slurmd, +2 slurmdbd, +3 MariaDB (127.0.0.1 only), so a site's own Slurm is not disturbed.
# Every job's task prolog appends "<jobid> <CUDA_VISIBLE_DEVICES>" to $CVEP_SLURM_DIR/log/gpu-env.log.
set -euo pipefail

DIR=${CVEP_SLURM_DIR:-/tmp/caduceus-vep-slurm}
PORT=${CVEP_SLURM_PORT:-16817}
CLUSTER=cvep
ACCOUNT=cvep
PARTITION=debug
GPUS=2
HOST=$(hostname -s)
ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
export SLURM_CONF=$ETC/slurm.conf
PACKAGES=(slurm-wlm slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
BINARIES=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mungekey mariadbd mariadb-install-db)

log() { printf '[cluster.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

missing_binaries() {
    local b out=()
    for b in "${BINARIES[@]}"; do command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out+=("$b"); done
    echo "${out[*]:-}"
}

install() {
    local missing
    missing=$(missing_binaries)
    if [ -z "$missing" ]; then log "packages present"; return 0; fi
    [ "$(id -u)" -eq 0 ] || die "missing $missing; installing needs root (sudo $0 install)"
    command -v apt-get >/dev/null || die "missing $missing and no apt-get: install ${PACKAGES[*]} yourself"
    log "installing ${PACKAGES[*]} (missing: $missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d (containers) keeps the packages' own service starts away; we start our own daemons.
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${PACKAGES[@]}" >"$DIR.apt.log" 2>&1 \
        || { tail -30 "$DIR.apt.log" >&2; die "apt-get install failed (log: $DIR.apt.log)"; }
    missing=$(missing_binaries)
    [ -z "$missing" ] || die "still missing after install: $missing"
    log "packages installed"
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        (( SECONDS - t0 < limit )) || die "$what: not ready after ${limit}s (logs in $LOG)"
        sleep 0.5
    done
}

write_config() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state/ctld" "$DIR/state/d" "$DIR/dev" "$DIR/munge" "$DIR/mysql/data" "$DIR/mysql/run"
    chmod 755 "$DIR" "$LOG"
    local cpus mem i gres_lines=""
    cpus=$(nproc)
    mem=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))
    for (( i = 0; i < GPUS; i++ )); do
        # Slurm wants a character device per GPU; a link to /dev/null is one.
        ln -sfn /dev/null "$DIR/dev/fakegpu$i"
        gres_lines+="Name=gpu File=$DIR/dev/fakegpu$i"$'\n'
    done
    cat >"$ETC/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$ETC/task_prolog.sh
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
SchedulerParameters=bf_interval=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# With munge, the "password" is the munge socket for talking to slurmdbd (AuthInfo is not used there).
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    printf 'AutoDetect=off\n%s' "$gres_lines" >"$ETC/gres.conf"
    cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
    cat >"$ETC/task_prolog.sh" <<EOF
#!/bin/sh
# Runs in each task's environment before it starts: what GPU did Slurm give the job?
echo "\$SLURM_JOB_ID \${CUDA_VISIBLE_DEVICES:-unset}" >>$LOG/gpu-env.log
EOF
    chmod 755 "$ETC/task_prolog.sh"
}

link_default_config() {
    local link=/etc/slurm/slurm.conf
    if [ -e "$link" ] || [ -L "$link" ]; then
        case "$(readlink "$link" || true)" in
            "$ETC/slurm.conf") return 0 ;;
            "$DIR"/*|/tmp/*) ln -sfn "$ETC/slurm.conf" "$link"; return 0 ;;  # a stale link of a test cluster
        esac
        die "$link exists and is not this test cluster's: a real Slurm is configured here; not touching it"
    fi
    mkdir -p /etc/slurm
    ln -s "$ETC/slurm.conf" "$link"
}

unlink_default_config() {
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null || true)" != "$ETC/slurm.conf" ] || rm -f /etc/slurm/slurm.conf
}

start_munge() {
    if alive "$RUN/munged.pid"; then return 0; fi
    chown munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"  # munged: the socket folder must be searchable by all
    [ -s "$DIR/munge/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$DIR/munge/munge.key"
    runuser -u munge -- munged --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 15 munged test -s "$DIR/munge/munged.pid"
    ln -sfn "$DIR/munge/munged.pid" "$RUN/munged.pid"
    wait_for 15 munge munge --socket="$DIR/munge/munge.socket" -n
}

sql() { mariadb --no-defaults --socket="$DIR/mysql/run/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    if alive "$DIR/mysql/run/mysqld.pid"; then return 0; fi
    chown -R mysql:mysql "$DIR/mysql"
    if [ ! -d "$DIR/mysql/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql/data" --auth-root-authentication-method=socket \
            >"$LOG/mariadb-install.log" 2>&1 || { tail -20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # mariadbd drops to the mysql user itself; its pid file and socket need a folder that user owns.
    setsid mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql/data" --socket="$DIR/mysql/run/mysqld.sock" \
        --pid-file="$DIR/mysql/run/mysqld.pid" --port=$((PORT + 3)) --bind-address=127.0.0.1 \
        --log-error="$DIR/mysql/mariadb.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb sql -e "select 1"
    ln -sfn "$DIR/mysql/run/mysqld.pid" "$RUN/mariadb.pid"
    sql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
            FLUSH PRIVILEGES;"
}

start_slurmdbd() {
    if alive "$RUN/slurmdbd.pid"; then return 0; fi
    slurmdbd
    wait_for 60 slurmdbd sacctmgr -n show cluster
}

setup_accounts() {
    [ -n "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster)" ] || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    [ -n "$(sacctmgr -n -P show account "$ACCOUNT" format=account)" ] \
        || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="caduceus-vep tests" organization=cvep >/dev/null
    [ -n "$(sacctmgr -n -P show user root format=user)" ] \
        && [ -n "$(sacctmgr -n -P show assoc user=root account="$ACCOUNT" format=user)" ] \
        || sacctmgr -i add user root account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null
}

start_slurm() {
    alive "$RUN/slurmctld.pid" || slurmctld
    wait_for 30 slurmctld scontrol ping
    alive "$RUN/slurmd.pid" || slurmd -N "$HOST"
    # The node is up once the controller has heard from slurmd.
    wait_for 90 "node $HOST idle" sh -c "sinfo -h -N -n '$HOST' -o %T | grep -Eq '^(idle|mixed|allocated)$'"
}

start() {
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 start)"
    local t0=$SECONDS
    mkdir -p "$DIR"
    install
    if alive "$RUN/slurmctld.pid" && alive "$RUN/slurmd.pid" && alive "$RUN/slurmdbd.pid"; then
        link_default_config
        log "already running (SLURM_CONF=$SLURM_CONF)"
        return 0
    fi
    write_config
    link_default_config
    start_munge
    start_mariadb
    start_slurmdbd
    setup_accounts
    start_slurm
    log "cluster up in $(( SECONDS - t0 ))s: export SLURM_CONF=$SLURM_CONF (account $ACCOUNT, partition $PARTITION)"
}

stop_pid() {  # stop_pid NAME PIDFILE
    local pidfile=$2 pid i
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < 100; i++ )); do kill -0 "$pid" 2>/dev/null || { log "stopped $1"; return 0; }; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    log "killed $1 (did not stop on SIGTERM)"
}

stop() {
    if alive "$RUN/slurmctld.pid"; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        [ -z "$jobs" ] || { scancel $jobs 2>/dev/null || true; sleep 1; }
    fi
    stop_pid slurmd "$RUN/slurmd.pid"
    stop_pid slurmctld "$RUN/slurmctld.pid"
    stop_pid slurmdbd "$RUN/slurmdbd.pid"
    stop_pid mariadb "$DIR/mysql/run/mysqld.pid"
    stop_pid munged "$DIR/munge/munged.pid"
    unlink_default_config
}

status() {
    local name pidfile rc=0
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        pidfile=$RUN/$name.pid
        if alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; rc=1; fi
    done
    [ $rc -ne 0 ] || sinfo -N -o "%N %T %c %m %G"
    return $rc
}

# install, start and stop take a lock: the suite starts the cluster in the background at session start
# (conftest.py) while a test's own `start` may come before that one has finished; it waits for it.
# (fd 9, the lock, is closed for the command itself: the daemons it starts must not hold the lock.)
serialized() { mkdir -p "$(dirname "$DIR")"; exec 9>"$DIR.lock"; flock 9; "$@" 9>&-; }

case "${1:-}" in
    install) serialized install ;;
    start) serialized start ;;
    stop) serialized stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
