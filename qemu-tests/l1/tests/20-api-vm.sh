# 20-api-vm.sh - the control plane's VM layer (api/vm.c) through api-vmtool:
# a template built from the guest kernel + rootfs, sandboxes restored from
# it with their own identity, pause to disk and resume, stop.

ct_register api_vm 900 vmm rootfs

VMTOOL=$CT_BIN/api-vmtool

# vmtool ARGS...: runs api-vmtool with its stderr (progress, timings) in
# out.log and the last line of it in vmtool.err for failure messages.
vmtool() {
	"$VMTOOL" "$@" 2>vmtool.err
	_rc=$?
	cat vmtool.err >&2
	return $_rc
}
vmtool_ms() { sed -n 's/.* ms=\([0-9]*\)$/\1/p' vmtool.err | tail -n 1; }
vmtool_why() { tail -n 2 vmtool.err | tr '\n' ' '; }

# sbx_start N: sandbox sN with its identity; its pid in sN.pid.
sbx_start() {
	init="{\"sandboxId\":\"sbx-$1\",\"envVars\":{\"CUBE_ID\":\"sbx-$1\"}$2}"
	pid=$(vmtool start "s$1" "$CT_DIR/tpl" "$CT_DIR/sb/s$1" "$CT_DIR/run/s$1" "$init") ||
		ct_fail "start s$1: $(vmtool_why)"
	echo "$pid" >"s$1.pid"
	echo "$init" >"s$1.init"
	ct_cleanup "kill -9 $pid"
}
sbx() { echo "s$1 $CT_DIR/sb/s$1 $CT_DIR/run/s$1"; }
sbx_gc() {
	n=$1
	shift
	$GUESTCTL "$CT_DIR/run/s$n/vsock.sock" "$@"
}
# A pid counts as running unless it is gone or a zombie nobody reaped yet.
pid_running() {
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat")
	[ "$st" != Z ]
}

test_api_vm() {
	[ -x "$VMTOOL" ] || ct_skip "api-vmtool is not in the payload (make build/api-vmtool; run.sh copies it)"
	# 1. The template: cold boot, agent, snapshot.
	vmtool template "$CT_DIR/tpl" "$VMLINUX" "$ROOTFS" 1 "$L2_MEM" || ct_fail "template: $(vmtool_why)"
	t_tpl=$(sed -n 's/.* built ms=\([0-9]*\)$/\1/p' vmtool.err)
	[ -f tpl/snap/state ] || ct_fail "template: no tpl/snap/state: $(ls tpl tpl/snap 2>&1 | tr '\n' ' ')"
	leftovers=$(ls tpl | grep -v -x snap)
	[ -z "$leftovers" ] || ct_fail "template dir holds more than snap/: $leftovers"
	ct_log "template built in $t_tpl ms: $(ls -s tpl/snap | tr '\n' ' ')"

	# 2. Three sandboxes; s3 with an access token (its resume must send it).
	t_start=""
	for i in 1 2 3; do
		extra=""
		[ $i = 3 ] && extra=',"accessToken":"tok-s3-secret"'
		sbx_start $i "$extra"
		t_start="$t_start $(vmtool_ms)"
	done
	for i in 1 2; do
		out=$(sbx_gc $i run 'echo "$CUBE_ID"' 2>&1) || ct_fail "s$i: run: $out"
		[ "$out" = "sbx-$i" ] || ct_fail "s$i answers as '$out' (want sbx-$i)"
	done
	sbx_gc 3 health --quiet --timeout 5000 || ct_fail "s3: /health does not answer"
	if sbx_gc 3 run 'echo no' >s3.run 2>&1; then
		ct_fail "s3 ran a command without its access token: /init did not set it"
	fi
	for i in 1 2 3; do
		vmtool alive $(sbx $i) "$(cat s$i.pid)" || ct_fail "s$i: alive says no"
	done
	ct_log "3 sandboxes up (start ms:$t_start), each with its own identity; s3 needs its token"

	# 3. Pause s2 to disk and resume it: the file survives, the clock is set.
	out=$(sbx_gc 2 run 'echo keep-me-$$ >/root/pause-file && cat /root/pause-file' --user root 2>&1) ||
		ct_fail "s2: write: $out"
	marker=$out
	old=$(cat s2.pid)
	vmtool pause $(sbx 2) "$old" || ct_fail "pause s2: $(vmtool_why)"
	t_pause=$(vmtool_ms)
	pid_running "$old" && ct_fail "s2: VMM $old still running after pause"
	[ -f sb/s2/paused/state ] || ct_fail "s2: no paused/state: $(ls sb/s2 2>&1 | tr '\n' ' ')"
	[ -e run/s2/vsock.sock ] && ct_fail "s2: vsock.sock left after pause"
	if vmtool alive $(sbx 2) "$old"; then ct_fail "s2: alive says yes while paused"; fi
	paused_kb=$(du -k sb/s2/paused | cut -f1)
	sleep 3 # a clock nobody sets would now be behind
	pid=$(vmtool resume $(sbx 2) "$(cat s2.init)") || ct_fail "resume s2: $(vmtool_why)"
	t_resume=$(vmtool_ms)
	echo "$pid" >s2.pid
	ct_cleanup "kill -9 $pid"
	out=$(sbx_gc 2 run 'cat /root/pause-file; echo "$CUBE_ID"; date +%s' --user root 2>&1) ||
		ct_fail "s2 after resume: $out"
	[ "$(echo "$out" | sed -n 1p)" = "$marker" ] || ct_fail "s2: file after resume '$out' (want $marker)"
	[ "$(echo "$out" | sed -n 2p)" = sbx-2 ] || ct_fail "s2: identity after resume: $out"
	skew=$(($(date +%s) - $(echo "$out" | sed -n 3p)))
	[ ${skew#-} -le 2 ] || ct_fail "s2: guest clock off by $skew s after resume"
	[ -e sb/s2/paused ] && ct_fail "s2: paused/ still there after resume"
	# s3: its resume posts /init with X-Access-Token, or the agent refuses it.
	vmtool pause $(sbx 3) "$(cat s3.pid)" || ct_fail "pause s3: $(vmtool_why)"
	pid=$(vmtool resume $(sbx 3) "$(cat s3.init)") || ct_fail "resume s3 (token): $(vmtool_why)"
	echo "$pid" >s3.pid
	ct_cleanup "kill -9 $pid"
	ct_log "pause s2 $t_pause ms ($paused_kb KiB on disk), resume $t_resume ms, file + identity kept, clock skew $skew s"

	# 4. Stop everything: no VMM, no socket left.
	for i in 1 2 3; do
		vmtool stop $(sbx $i) "$(cat s$i.pid)" || ct_fail "stop s$i: $(vmtool_why)"
		pid_running "$(cat s$i.pid)" && ct_fail "s$i: VMM still running after stop"
		left=$(ls run/s$i | grep sock)
		[ -z "$left" ] || ct_fail "s$i: sockets left after stop: $left"
	done
	t_stop=$(vmtool_ms)
	running=""
	for p in /proc/[0-9]*; do
		grep -q cube-vmm "$p/cmdline" 2>/dev/null && pid_running "${p#/proc/}" && running="$running ${p#/proc/}"
	done
	[ -z "$running" ] || ct_fail "cube-vmm processes left: $running"
	# A start that cannot work says why and leaves nothing behind.
	if vmtool start bad "$CT_DIR/nothing" "$CT_DIR/sb/bad" "$CT_DIR/run/bad" '{}'; then
		ct_fail "start from a missing template succeeded"
	fi
	grep -q "no snapshot" vmtool.err || ct_fail "start from a missing template: $(vmtool_why)"
	[ -e run/bad ] && ct_fail "run/bad left after a failed start"
	ct_pass "template $t_tpl ms; start ms:$t_start; pause $t_pause ms; resume $t_resume ms; stop $t_stop ms;" \
		"identities, file across pause, clock (skew $skew s), token on resume ok; nothing left running"
}
