# lib.sh - helpers for tests that run inside L1 (busybox sh). Sourced by
# init (the runner) and by runone.sh (one test in its own process).
#
# A test is a function test_NAME, registered with ct_register. It runs in
# its own process with CT_DIR as its scratch directory (on tmpfs) and ends
# with exactly one of ct_pass / ct_fail / ct_skip (which exit). Whatever
# else it prints goes to CT_DIR/out.log; ct_log also reaches the console as
# progress. VMs started with vm_boot / vm_restore are killed after the test
# whatever happened, and commands given to ct_cleanup run then too.

CT_ROOT=/cubetest
CT_BIN=$CT_ROOT/bin
VMM=$CT_BIN/cube-vmm
GUESTCTL=$CT_BIN/guestctl
L1UTIL=$CT_BIN/l1util
VMLINUX=$CT_ROOT/guest/vmlinux
ROOTFS=/work/rootfs.ext4
# L2 kernel command line: the VMM appends its console and device fragments.
L2_CMDLINE=${L2_CMDLINE:-"root=/dev/vda rw quiet panic=-1"}
L2_MEM=${L2_MEM:-256}
# Time for a cold L2 boot to reach its agent. Nested under TCG an L2 Linux
# takes 5-10 s; leave room for several running at once.
AGENT_WAIT_MS=${AGENT_WAIT_MS:-180000}

CT_TESTS=""

# ct_register NAME TIMEOUT_S [NEEDS...]   NEEDS: vmm, qemu (payload parts)
ct_register() {
	_name=$1
	CT_TESTS="$CT_TESTS $_name"
	eval "CT_TIMEOUT_$_name=$2"
	shift 2
	eval "CT_NEEDS_$_name=\"$*\""
}

ct_console() { echo "$*" >&3; }
ct_log() {
	echo "$*"
	ct_console "CUBETEST-LOG $CT_NAME: $*"
}
ct_result() {
	echo "$1 $2" >"$CT_DIR/result"
	echo "result: $1 $2"
	exit 0
}
ct_pass() { ct_result PASS "$*"; }
ct_fail() { ct_result FAIL "$*"; }
ct_skip() { ct_result SKIP "$*"; }
ct_cleanup() { echo "$*" >>"$CT_DIR/cleanup"; }
ct_now() { $L1UTIL now; }

# --- VMs -------------------------------------------------------------------------
# Every VM has a NAME; its files live in CT_DIR: NAME.vsock (vsock Unix socket),
# NAME.ctl (control socket), NAME.serial (guest console), NAME.vmm.log (the
# VMM's stderr), NAME.layer (its disk layer), NAME.pid.

# _vm_spawn NAME CMD...: runs CMD in the background; NAME.pid gets its pid
# and NAME.rc its exit code (a watcher subshell waits for it, so any
# process, not only the one that started it, can learn how it ended).
_vm_spawn() {
	_n=$1
	shift
	rm -f "$CT_DIR/$_n.pid" "$CT_DIR/$_n.rc"
	(
		"$@" </dev/null >"$CT_DIR/$_n.vmm.log" 2>&1 &
		echo $! >"$CT_DIR/$_n.pid.tmp"
		mv "$CT_DIR/$_n.pid.tmp" "$CT_DIR/$_n.pid"
		wait $!
		echo $? >"$CT_DIR/$_n.rc"
	) &
	while [ ! -s "$CT_DIR/$_n.pid" ]; do sleep 0.01; done
	cat "$CT_DIR/$_n.pid" >>"$CT_DIR/pids"
}

# vm_boot NAME [cube-vmm run options]: defaults for what is not given.
vm_boot() {
	n=$1
	shift
	set -- "$@" # keep the caller's options, add defaults after
	case " $* " in *" --kernel "*) ;; *) set -- "$@" --kernel "$VMLINUX" ;; esac
	case " $* " in *" --mem "*) ;; *) set -- "$@" --mem "$L2_MEM" ;; esac
	case " $* " in *" --disk "*) ;; *) set -- "$@" --disk "$ROOTFS,layer=$CT_DIR/$n.layer" ;; esac
	case " $* " in *" --cmdline "*) ;; *) set -- "$@" --cmdline "$L2_CMDLINE" ;; esac
	case " $* " in *" --vsock "*) ;; *) set -- "$@" --vsock "cid=3,uds=$CT_DIR/$n.vsock" ;; esac
	echo "+ cube-vmm run $* --serial $CT_DIR/$n.serial --control $CT_DIR/$n.ctl --id $n" >&2
	_vm_spawn "$n" $VMM run "$@" --serial "$CT_DIR/$n.serial" --control "$CT_DIR/$n.ctl" --id "$n"
}

# vm_restore NAME SNAPDIR [cube-vmm restore options]
vm_restore() {
	n=$1
	snap=$2
	shift 2
	echo "+ cube-vmm restore --snapshot $snap --disk-layer 0=$CT_DIR/$n.layer --vsock-uds $CT_DIR/$n.vsock" \
		"--serial $CT_DIR/$n.serial --control $CT_DIR/$n.ctl --id $n $*" >&2
	_vm_spawn "$n" $VMM restore --snapshot "$snap" --disk-layer "0=$CT_DIR/$n.layer" \
		--vsock-uds "$CT_DIR/$n.vsock" --serial "$CT_DIR/$n.serial" --control "$CT_DIR/$n.ctl" --id "$n" "$@"
}

vm_pid() { cat "$CT_DIR/$1.pid"; }
vm_alive() { [ ! -s "$CT_DIR/$1.rc" ]; }
gc() {
	n=$1
	shift
	$GUESTCTL "$CT_DIR/$n.vsock" "$@"
}
vm_ctl() {
	n=$1
	shift
	$VMM ctl "$CT_DIR/$n.ctl" "$@"
}
# vm_agent NAME [MS]: waits until the agent answers /health.
vm_agent() { gc "$1" health --quiet --wait "${2:-$AGENT_WAIT_MS}" --pid "$(vm_pid "$1")"; }

# vm_wait_exit NAME [SECONDS]: prints the VMM's exit code, or "timeout"
# (and fails).
vm_wait_exit() {
	_i=0
	while [ ! -s "$CT_DIR/$1.rc" ]; do
		_i=$((_i + 1))
		if [ "$_i" -gt $((${2:-60} * 10)) ]; then
			echo timeout
			return 1
		fi
		sleep 0.1
	done
	cat "$CT_DIR/$1.rc"
}

# vm_stop NAME: control-socket shutdown, then the exit code (kill -9 if stuck).
vm_stop() {
	vm_ctl "$1" shutdown >/dev/null 2>&1
	vm_wait_exit "$1" 60 || kill -9 "$(vm_pid "$1")" 2>/dev/null
}

# Last lines of a VM's logs, for failure details.
vm_tail() {
	for f in "$CT_DIR/$1.vmm.log" "$CT_DIR/$1.serial"; do
		[ -s "$f" ] && tail -n "${2:-5}" "$f" | tr -d '\r' | sed "s|^|$(basename "$f"): |"
	done
}

# vm_error NAME: the VMM's last logged message (its logs are JSON lines).
vm_error() {
	sed -n 's/.*"msg":"\(.*\)"}$/\1/p' "$CT_DIR/$1.vmm.log" | tail -n 1
}

# The file in a snapshot directory that holds the state (starts with the
# magic), and the one that holds guest memory (the largest other file).
snap_state_file() {
	for f in "$1"/*; do
		[ "$(head -c 8 "$f" 2>/dev/null)" = CUBESNAP ] && echo "$f" && return 0
	done
	return 1
}
snap_mem_file() {
	st=$(snap_state_file "$1")
	ls -S "$1"/* | grep -v -x -F "$st" | head -n 1
}
