#!/usr/bin/env bash
# A real Slurm cluster of several virtual nodes on this one machine, for tests.
#
# Usage: .ci/slurm-cluster.sh up|down|status
#
#   up      install Slurm + munge from Debian packages when missing, write a
#           slurm.conf for NODES virtual nodes x CPUS CPUs, start munged,
#           slurmctld and one slurmd per virtual node, and wait until every
#           node is idle. Idempotent: a healthy cluster started by this script
#           is left as it is.
#   down    stop the daemons this script started (pids it recorded) and drop
#           their runtime state (run/, spool/, state/); conf and logs stay for
#           post-mortems. Nothing outside the state directory is touched.
#   status  exit 0 when the cluster answers (sinfo) and every node it reports
#           is usable (idle, mixed, allocated or completing).
#
# Exit codes:
#   0  success
#   1  bring-up failed (daemons did not start or nodes never became idle);
#      the daemon logs are printed
#   2  usage error
#   3  prerequisites missing: not root, no apt-get, packages not installable,
#      a foreign /etc/slurm/slurm.conf. Callers skip Slurm tests on this code.
#
# Environment (all optional):
#   QCGPJ_SLURM_DIR    state directory (default /tmp/qcgpj-slurm): slurm.conf,
#                      log/, run/ (pid files), spool/, state/
#   QCGPJ_SLURM_NODES  number of virtual nodes n1..nN (default 2)
#   QCGPJ_SLURM_CPUS   CPUs per virtual node (default 4)
#   QCGPJ_SLURM_GPUS   fake GPUs per virtual node, as GRES (default 2; 0: none)
#   QCGPJ_SLURM_PORT   first slurmd port; node i listens on PORT+i (default 17000)
#   QCGPJ_SLURM_CTLD_PORT  slurmctld port (default 6817)
#   QCGPJ_SLURM_WAIT   seconds to wait for idle nodes (default 60)
#
# Gotchas met on Debian 12 (Slurm 22.05.8) in a container without systemd or
# a cgroup controller; they explain the choices below:
#   - The packages' maintainer scripts try to start the services; without
#     systemd that fails or starts daemons with the wrong config. A
#     /usr/sbin/policy-rc.d that exits 101 stops that (we create one only for
#     the install when none exists, and remove it afterwards).
#   - Several slurmd on one host need: NodeName aliases (n1..nN) all with
#     NodeHostname=<this host> and a distinct Port each, slurmd started as
#     `slurmd -N <alias>`, and %n in SlurmdPidFile/SlurmdSpoolDir/SlurmdLogFile
#     so the daemons do not share files. The spool dirs must exist beforehand.
#   - No usable cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none.
#     /sys/fs/cgroup lists v1 controllers and slurmd starts with
#     proctrack/cgroup, but every step then fails to launch ("cgroup namespace
#     'freezer' not mounted", srun: "task 0 launch failed: Plugin
#     initialization failed"). task/affinity would work, but binds the 4
#     virtual CPUs of every node onto the same 2 real cores (0,1,1,0); with
#     task/none, --cpu-bind prints "cluster configuration lacks support for
#     cpu binding" and binds nothing.
#   - SlurmdParameters=config_overrides lets a virtual node claim more CPUs
#     than the hardware has; without it slurmd registers the real core count
#     and the node goes to INVALID/DRAIN ("Low socket*core*thread count").
#   - SelectType=select/cons_tres + CR_Core: steps get whole cores, so
#     `srun --exact` steps in one allocation run side by side. (Without
#     --exact a step takes every CPU of the allocation and steps serialize.)
#   - Client commands (sinfo, srun, salloc, scontrol) read
#     /etc/slurm/slurm.conf unless SLURM_CONF is set: we symlink it to our
#     conf, and refuse to replace a real file we did not write.
#   - The node hostname must resolve (slurmd looks up NodeHostname); we add
#     `127.0.0.1 <host>` to /etc/hosts only if `getent hosts` fails.
#   - Daemons are started with stdio on /dev/null/log files: a daemon that
#     inherits a caller's pipe (subprocess.run(capture_output=True)) keeps it
#     open and the caller never sees EOF.
#   - `slurmctld -c` starts with a clean state (no jobs left from a previous
#     run, no stale node states).
#   - ReturnToService=2: a virtual node that was DOWN (slurmd restarted)
#     comes back by itself once it registers.
#   - `salloc -n9` with 8 free CPUs does not fail, it waits forever; tests
#     must use --immediate=N and timeouts. A salloc that is SIGKILLed leaves
#     its job holding the nodes (InactiveLimit=0, MaxTime=INFINITE): give
#     test jobs --time and a unique --job-name, and `scancel --name=` them.
#     salloc runs its command locally in a process group of its own: neither
#     scancel nor killing salloc stops that command; kill its session.
#   - Stopping slurmd does not stop running steps (slurmstepd is a separate
#     process): `down` cancels all jobs and waits for them first.
#   - The Debian munge package creates /etc/munge/munge.key itself; mungekey
#     is only a fallback.
#
# What steps see on this cluster (for the srun executor; Slurm 22.05.8):
#   - `srun --exact -N1 -n1 -c1 -w nX` steps run side by side (8 one-CPU
#     steps on 2x4 CPUs meet at a rendezvous). Without --exact AND without -c
#     they serialize (4 x sleep 2: 8.1 s); -c alone already gives 2.1 s.
#   - A 9th step waits ("step creation temporarily disabled, retrying");
#     `srun --immediate=N` turns that into an error after N s. `-w` naming a
#     node outside the allocation fails at once ("Requested node
#     configuration is not available"). -n1 without -N1 on 2 nodes only warns.
#   - Every virtual node has hostname `hostname`; SLURMD_NODENAME (n1, n2)
#     and SLURM_STEP_NODELIST tell them apart. SLURM_JOB_NODELIST,
#     SLURM_NODELIST and SLURM_JOB_CPUS_PER_NODE stay job-wide inside steps;
#     SLURM_NTASKS/SLURM_NNODES/SLURM_TASKS_PER_NODE become the step's.
#     SLURM_CPUS_ON_NODE is absent under salloc, set (node-wide) in steps.
#   - Cancelling a step: SIGTERM (or HUP, QUIT) to srun = immediate SIGKILL
#     of the tasks (no trap runs), srun exits 137 in ~20 ms. One SIGINT only
#     prints status; two within 1 s forward SIGINT then kill. SIGKILL of srun
#     leaves the step alive until the job ends: never do that. `scancel
#     J.S` = SIGKILL too; `scancel --signal=TERM J.S` delivers TERM (graceful,
#     srun exits 143) but scancel itself exits 225 with a spurious "Kill job
#     error ... Invalid job id specified". Find J.S by giving the step a
#     unique -J NAME: `squeue -h -s -j J --name=NAME -o %i`. Cancelling the
#     whole job sends TERM, then KILL after KillWait.
#   - proctrack/linuxproc follows parent pids only: a task's grandchild that
#     daemonizes (setsid + double fork) survives the step AND the job.
#   - Step launch costs ~30 ms in sequence (~34/s), 60-75/s in parallel.
#
# Fake GPUs (QCGPJ_SLURM_GPUS per node): GresTypes=gpu, Gres=gpu:N on every
# node, and a gres.conf naming N links under $DIR/dev to harmless character
# devices (/dev/null, /dev/zero...) as their device files (slurmd rejects
# plain files: "not a valid character or block device"; AutoDetect=off). Slurm 22.05 with task/none then
# schedules them like real GPUs (measured): `salloc --gres=gpu:2` gets them
# and `scontrol show job -d` names them per node (`Nodes=n[1-2] CPU_IDs=0-3
# Mem=0 GRES=gpu:2(IDX:0-1)`; SLURM_JOB_GPUS is set in batch jobs, not under
# salloc). A step with --gres=gpu:1 gets CUDA_VISIBLE_DEVICES,
# ROCR_VISIBLE_DEVICES and GPU_DEVICE_ORDINAL set to its one index (Slurm's
# choice, overriding what srun exported), and a third such step on a node of
# 2 waits; a step without --gres sees every GPU of the job (and does not
# hold them); --gres=none unsets the three variables. An allocation without
# --gres has no GPU.

set -u -o pipefail

DIR="${QCGPJ_SLURM_DIR:-/tmp/qcgpj-slurm}"
NODES="${QCGPJ_SLURM_NODES:-2}"
CPUS="${QCGPJ_SLURM_CPUS:-4}"
GPUS="${QCGPJ_SLURM_GPUS:-2}"
PORT_BASE="${QCGPJ_SLURM_PORT:-17000}"
CTLD_PORT="${QCGPJ_SLURM_CTLD_PORT:-6817}"
WAIT_S="${QCGPJ_SLURM_WAIT:-60}"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client munge)
MUNGE_KEY=/etc/munge/munge.key

EX_FAIL=1
EX_USAGE=2
EX_PREREQ=3

log() { printf 'slurm-cluster: %s\n' "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

node_names() { local i; for ((i = 1; i <= NODES; i++)); do printf 'n%d\n' "$i"; done; }

# --- pid bookkeeping --------------------------------------------------------
# Only pids recorded under $DIR/run are ever signalled, and only while their
# /proc/<pid>/comm still names the daemon we started (pids get reused).

pid_alive() { # pidfile expected-comm
    local pidfile=$1 comm=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(<"/proc/$pid/comm") == "$comm" ]]
}

# Every daemon we own, as "pidfile comm" lines.
owned_daemons() {
    local n
    echo "$DIR/run/slurmctld.pid slurmctld"
    for n in $(node_names); do echo "$DIR/run/slurmd.$n.pid slurmd"; done
    # munged is listed only when we started it (see start_munge).
    [[ -e $DIR/run/munged.owned ]] && echo "/run/munge/munged.pid munged"
    return 0
}

all_owned_alive() {
    local pidfile comm
    while read -r pidfile comm; do
        pid_alive "$pidfile" "$comm" || return 1
    done < <(owned_daemons)
}

stop_daemons() { # [keep-munge]
    local pidfile comm pids=()
    # Slurm daemons first, munged last: slurmd talks to munge while exiting.
    while read -r pidfile comm; do
        [[ $comm == munged ]] && continue
        if pid_alive "$pidfile" "$comm"; then pids+=("$(<"$pidfile")"); fi
    done < <(owned_daemons)
    stop_pids "${pids[@]}"
    [[ ${1:-} == keep-munge ]] && return 0
    if [[ -e $DIR/run/munged.owned ]]; then
        if pid_alive /run/munge/munged.pid munged; then
            stop_pids "$(</run/munge/munged.pid)"
        fi
        rm -f "$DIR/run/munged.owned"
    fi
}

stop_pids() { # pids... : SIGTERM all at once (each takes ~2 s), SIGKILL after 10 s
    (($# == 0)) && return 0
    local pid i alive
    log "stopping pids $*"
    kill -TERM "$@" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    log "SIGKILL stragglers"
    kill -KILL "$@" 2>/dev/null
    return 0
}

# --- status -----------------------------------------------------------------

cluster_answers() {
    command -v sinfo >/dev/null 2>&1 || return 1
    timeout 10 sinfo -h -N -o '%N' >/dev/null 2>&1
}

all_nodes_idle() {
    local out n state
    out=$(timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null) || return 1
    for n in $(node_names); do
        state=$(awk -v n="$n" '$1 == n {print $2}' <<<"$out")
        # idle, or mixed/allocated by a test: the node is up either way.
        [[ $state =~ ^(idle|mixed|allocated|completing)$ ]] || return 1
    done
}

# --- up: prerequisites ------------------------------------------------------

packages_missing() {
    local p missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    echo "${missing[@]}"
}

install_packages() {
    local missing created_policy=0 t0
    missing=$(packages_missing)
    [[ -z $missing ]] && return 0
    command -v apt-get >/dev/null 2>&1 || die $EX_PREREQ "apt-get not found; install $missing by hand"
    log "installing $missing"
    t0=$SECONDS
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    local pkgs
    read -ra pkgs <<<"$missing"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}")
    # Try with the package lists we have; refresh them only if that fails
    # (empty or stale lists: "Unable to locate package", 404 on a .deb).
    if ! "${apt[@]}" >"$DIR/log/apt.log" 2>&1; then
        log "install failed with current package lists; running apt-get update"
        if ! apt-get update -q >>"$DIR/log/apt.log" 2>&1 || ! "${apt[@]}" >>"$DIR/log/apt.log" 2>&1; then
            ((created_policy)) && rm -f /usr/sbin/policy-rc.d
            tail -n 20 "$DIR/log/apt.log" >&2
            die $EX_PREREQ "could not install ${PACKAGES[*]} (see $DIR/log/apt.log)"
        fi
    fi
    ((created_policy)) && rm -f /usr/sbin/policy-rc.d
    log "packages installed in $((SECONDS - t0)) s"
}

check_prereqs() {
    [[ $NODES =~ ^[1-9][0-9]*$ && $CPUS =~ ^[1-9][0-9]*$ && $GPUS =~ ^[0-9]+$ ]] \
        || die $EX_USAGE "QCGPJ_SLURM_NODES/QCGPJ_SLURM_CPUS must be positive integers (GPUS >= 0)"
    ((EUID == 0)) || die $EX_PREREQ "must run as root (starts slurmd/slurmctld/munged, may install packages)"
    mkdir -p "$DIR"/{log,run,spool,state} || die $EX_PREREQ "cannot create $DIR"
    install_packages
    local b
    for b in slurmctld slurmd sinfo srun scontrol munged mungekey; do
        command -v "$b" >/dev/null 2>&1 || die $EX_PREREQ "$b not found after install"
    done
    # Replace /etc/slurm/slurm.conf only when it is absent, or a symlink
    # (ours, maybe from another QCGPJ_SLURM_DIR) to a conf this script wrote.
    if [[ -L $ETC_CONF ]]; then
        if [[ -e $ETC_CONF ]] && ! grep -q '^# written by .ci/slurm-cluster.sh' "$ETC_CONF"; then
            die $EX_PREREQ "$ETC_CONF links to a conf not written by this script; refusing to replace it"
        fi
    elif [[ -e $ETC_CONF ]]; then
        die $EX_PREREQ "$ETC_CONF exists and was not written by this script; refusing to replace it"
    fi
}

ensure_hostname() {
    HOST=$(hostname -s)
    if ! getent hosts "$HOST" >/dev/null; then
        log "adding '127.0.0.1 $HOST' to /etc/hosts"
        echo "127.0.0.1 $HOST" >>/etc/hosts
    fi
}

# --- up: munge --------------------------------------------------------------

munge_works() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }

start_munge() {
    install -d -o munge -g munge -m 700 /etc/munge
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        mungekey -c -k "$MUNGE_KEY" || die $EX_FAIL "mungekey failed"
    fi
    chown munge:munge "$MUNGE_KEY" && chmod 400 "$MUNGE_KEY"
    # A munged someone else runs (system service) is used, never restarted.
    if munge_works; then return 0; fi
    log "starting munged"
    # --force: munged refuses to start when it finds a stale socket.
    runuser -u munge -- /usr/sbin/munged --force </dev/null >>"$DIR/log/munged.out" 2>&1 \
        || die $EX_FAIL "munged failed to start (see /var/log/munge/munged.log)"
    touch "$DIR/run/munged.owned"
    local i
    for ((i = 0; i < 50; i++)); do munge_works && return 0; sleep 0.1; done
    die $EX_FAIL "munged does not answer (munge -n | unmunge)"
}

# --- up: slurm --------------------------------------------------------------

write_gres() { # fake GPU device files and gres.conf (none when GPUS=0)
    local i gres_types='' node_gres=''
    rm -f "$DIR/gres.conf"
    if ((GPUS > 0)); then
        # Slurm wants character devices: links to harmless ones of the host.
        local devs=(null zero full random urandom)
        ((GPUS <= ${#devs[@]})) || die $EX_USAGE "QCGPJ_SLURM_GPUS: at most ${#devs[@]}"
        mkdir -p "$DIR/dev"
        for ((i = 0; i < GPUS; i++)); do ln -sfn "/dev/${devs[i]}" "$DIR/dev/gpu$i"; done
        printf '# written by .ci/slurm-cluster.sh: fake GPUs\nAutoDetect=off\nNodeName=n[1-%d] Name=gpu File=%s/dev/gpu[0-%d]\n' \
            "$NODES" "$DIR" "$((GPUS - 1))" >"$DIR/gres.conf"
        gres_types="GresTypes=gpu"
        node_gres="Gres=gpu:$GPUS"
    fi
    GRES_TYPES=$gres_types
    NODE_GRES=$node_gres
}

write_conf() {
    local last=$((PORT_BASE + NODES))
    write_gres
    cat >"$CONF.tmp" <<EOF
# written by .ci/slurm-cluster.sh: $NODES virtual nodes x $CPUS CPUs on $HOST
ClusterName=qcgpjci
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups in this container: track processes by parent pid, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.%n.pid
SlurmdSpoolDir=$DIR/spool/slurmd.%n
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
SchedulerType=sched/backfill
# React at once to submissions (tests allocate a lot, each one briefly).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
# Whole cores per step, so "srun --exact" steps share an allocation.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Let each virtual node claim $CPUS CPUs whatever the hardware has.
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=30
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
$GRES_TYPES
NodeName=n[1-$NODES] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[$((PORT_BASE + 1))-$last] CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=4000 $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    mkdir -p /etc/slurm
    ln -sfn "$CONF" "$ETC_CONF"
}

print_logs() {
    local f
    for f in "$DIR"/log/slurm*.log; do
        [[ -e $f ]] || continue
        echo "===== $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}

fail_up() {
    log "ERROR: $*"
    print_logs
    stop_daemons
    exit $EX_FAIL
}

start_slurm() {
    local n
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR/state"
    for n in $(node_names); do mkdir -p "$DIR/spool/slurmd.$n"; done
    : >"$DIR/log/slurmctld.log"
    log "starting slurmctld"
    # -c: clean start, no jobs or node states from an earlier run.
    slurmctld -c -f "$CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 \
        || fail_up "slurmctld failed to start"
    for n in $(node_names); do
        log "starting slurmd -N $n"
        slurmd -N "$n" -f "$CONF" </dev/null >>"$DIR/log/slurmd.$n.out" 2>&1 \
            || fail_up "slurmd -N $n failed to start"
    done
}

wait_idle() {
    local deadline=$((SECONDS + WAIT_S))
    until all_nodes_idle; do
        ((SECONDS < deadline)) || fail_up "nodes not idle after ${WAIT_S}s: $(sinfo -h -N -o '%N=%T' 2>&1 | tr '\n' ' ')"
        sleep 0.2
    done
    # Smoke test: a real step runs on a node.
    timeout 30 srun -N1 -n1 --immediate=10 true </dev/null >/dev/null 2>"$DIR/log/smoke.err" \
        || fail_up "smoke test 'srun -N1 -n1 true' failed: $(<"$DIR/log/smoke.err")"
}

cmd_up() {
    local t0=$SECONDS
    # A healthy cluster of ours is left alone (this needs no root).
    if [[ -d $DIR/run ]] && all_owned_alive && cluster_answers && all_nodes_idle; then
        log "already up: $(sinfo -h -N -o '%N=%T' | tr '\n' ' ')"
        return 0
    fi
    check_prereqs
    ensure_hostname
    # Partly up (a daemon died, or config changed): restart the Slurm daemons
    # we own; a working munged is kept.
    stop_daemons keep-munge
    start_munge
    write_conf
    start_slurm
    wait_idle
    log "up in $((SECONDS - t0)) s: $(sinfo -h -N -o '%N=%T/%c' | tr '\n' ' ')"
}

cmd_down() {
    if cluster_answers && pid_alive "$DIR/run/slurmctld.pid" slurmctld; then
        # Cancel every job of this (private) cluster and let the steps end
        # while slurmd still runs: slurmstepd and the tasks outlive a stopped
        # slurmd otherwise.
        local jobs i
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            timeout 10 scancel --quiet $jobs >/dev/null 2>&1 || true
            for ((i = 0; i < 150; i++)); do
                [[ -z $(timeout 10 squeue -h -o %A 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    stop_daemons
    local left
    left=$(pgrep -x slurmstepd | tr '\n' ' ')
    [[ -n $left ]] && log "warning: slurmstepd processes still running: $left"
    rm -rf "$DIR/run" "$DIR/spool" "$DIR/state"
    log "down"
}

cmd_status() {
    if ! command -v sinfo >/dev/null 2>&1; then
        log "sinfo not found: Slurm not installed"
        return 1
    fi
    local out
    if ! out=$(timeout 10 sinfo -h -N -o '%N %T %c' 2>&1); then
        log "sinfo failed: $out"
        return 1
    fi
    if [[ -z $out ]]; then
        log "sinfo reports no nodes"
        return 1
    fi
    printf '%s\n' "$out"
    # Answering is not enough: tests would wait for nodes that never come.
    local bad
    bad=$(awk '$2 !~ /^(idle|mixed|allocated|completing)$/ {printf "%s=%s ", $1, $2}' <<<"$out")
    if [[ -n $bad ]]; then
        log "nodes not usable: $bad"
        return 1
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit $EX_USAGE
        ;;
esac
