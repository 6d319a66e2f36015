# 90-stress.sh - opt-in stress of snapshot restore: many rounds of clones
# restored at once, each of which must answer over vsock. Registered only
# when L1's command line has cubetest.stress=ROUNDS (run.sh passes
# QEMU_STRESS_ROUNDS); cubetest.stress_clones=N sizes a round (default 10),
# cubetest.stress_hogs=N runs N busy loops in L1 meanwhile, so the clones
# see the slow, preempted vCPUs of a loaded host, and cubetest.stress_stop=1
# ends the test at the first round with a failure (its artifacts then reach
# the host sooner).

_stress_arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^cubetest.$1=//p" | tail -n 1; }

if [ -n "$(_stress_arg stress)" ]; then
	ct_register clone_stress 7200 vmm rootfs
fi

# stress_round R N: restores N clones of snap at once; each must answer
# within STRESS_WAIT_MS. Prints one line per clone that did not, and keeps
# its logs under fail/.
stress_round() {
	_r=$1
	_j=1
	while [ $_j -le "$2" ]; do
		vm_restore "r$_r-c$_j" "$CT_DIR/snap"
		_j=$((_j + 1))
	done
	_j=1
	while [ $_j -le "$2" ]; do
		_n="r$_r-c$_j"
		if ! vm_agent "$_n" "$STRESS_WAIT_MS" >/dev/null 2>&1; then
			mkdir -p fail
			{
				echo "stats: $(vm_ctl "$_n" stats 2>&1)"
				sleep 2
				echo "stats 2 s later: $(vm_ctl "$_n" stats 2>&1)"
			} >"fail/$_n.stats"
			cp "$_n.vmm.log" "$_n.serial" fail/ 2>/dev/null
			# Where the VMM's threads are (a vCPU stuck in the host
			# kernel never leaves KVM_RUN), then the guest's CPU and
			# interrupt state for offline decoding, and the template's.
			_p=$(vm_pid "$_n")
			for _t in /proc/$_p/task/*; do
				echo "== $_t $(cat $_t/comm) $(cut -d' ' -f3 $_t/stat) wchan=$(cat $_t/wchan 2>/dev/null)"
				cat $_t/stack 2>/dev/null
			done >"fail/$_n.threads" 2>&1
			for _k in 1 2; do
				timeout 30 $VMM ctl "$CT_DIR/$_n.ctl" snapshot "$CT_DIR/fail/$_n.snap$_k" >"fail/$_n.snap$_k.out" 2>&1
				mv "fail/$_n.snap$_k/state" "fail/$_n.snap$_k.state" 2>/dev/null
				rm -rf "fail/$_n.snap$_k"
			done
			for _t in /proc/$_p/task/*; do
				echo "== $_t $(cat $_t/comm) $(cut -d' ' -f3 $_t/stat) wchan=$(cat $_t/wchan 2>/dev/null)"
				cat $_t/stack 2>/dev/null
			done >"fail/$_n.threads-after" 2>&1
			[ -e fail/template-r$_r.state ] || cp snap/state "fail/template-r$_r.state"
			vm_agent "$_n" 5000 >"fail/$_n.after-snap" 2>&1 && echo "answers after pause/resume" >>"fail/$_n.after-snap"
			echo "stats at end: $(vm_ctl "$_n" stats 2>&1)" >>"fail/$_n.stats"
			echo "$_n: no answer within $STRESS_WAIT_MS ms; $(grep -c virtio_vsock.timeout "$_n.vmm.log") connect timeouts"
		fi
		_j=$((_j + 1))
	done
	_j=1
	while [ $_j -le "$2" ]; do
		vm_stop "r$_r-c$_j" >/dev/null
		rm -f "r$_r-c$_j.layer"
		_j=$((_j + 1))
	done
}

# stress_snapshot R: a fresh template for round R, snapshotted right after a
# command over vsock (as snapshot_clones does), so the rounds cover many
# points at which a guest can be frozen.
stress_snapshot() {
	rm -rf "$CT_DIR/snap" src.*
	boot_or_fail src --cmdline "root=/dev/vda rw loglevel=7 panic=-1"
	gc src run "echo round-$1 >/template-file && sync" --user root >/dev/null 2>&1 || ct_fail "round $1: template write"
	snap_or_fail src "$CT_DIR/snap"
}

test_clone_stress() {
	rounds=$(_stress_arg stress)
	clones=$(_stress_arg stress_clones)
	hogs=$(_stress_arg stress_hogs)
	STRESS_WAIT_MS=${STRESS_WAIT_MS:-60000}
	h=0
	while [ $h -lt "${hogs:-0}" ]; do
		sh -c 'while :; do :; done' &
		echo $! >>pids
		h=$((h + 1))
	done
	r=1
	total=0
	failures=""
	t0=$(ct_now)
	while [ $r -le "$rounds" ]; do
		stress_snapshot $r
		out=$(stress_round $r "${clones:-10}")
		total=$((total + ${clones:-10}))
		[ -n "$out" ] && failures="$failures $out"
		ct_log "round $r: $total clones so far$([ -n "$failures" ] && echo "; failures:$failures")"
		r=$((r + 1))
		[ -n "$failures" ] && [ -n "$(_stress_arg stress_stop)" ] && break
	done
	[ -z "$failures" ] || ct_fail "$total clones in $(($(ct_now) - t0)) ms;$failures"
	ct_pass "$total clones in $rounds rounds answered ($(($(ct_now) - t0)) ms, ${hogs:-0} busy loops in L1)"
}
