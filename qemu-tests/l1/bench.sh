# bench.sh - benchmarks inside L1 (run by init for cubetest.suite=bench;
# every output line reaches the host). cube-vmm and QEMU -M microvm boot the
# same vmlinux and rootfs with the same RAM, measured in the same run.
# "Agent ready" = the first answered GET /health: over the VMM's vsock Unix
# socket for cube-vmm, over AF_VSOCK through L1's vhost-vsock for QEMU.
. /cubetest/lib.sh
for f in /cubetest/tests/*.sh; do . "$f"; done
CT_NAME=bench
CT_DIR=/work/bench
mkdir -p "$CT_DIR"
cd "$CT_DIR" || exit 1
exec 3>/dev/null # ct_log progress: already on the console via stdout
N_BOOT=${N_BOOT:-3}
N_CLONES=${N_CLONES:-10}

note() { echo "# $*"; }
# stats FILE: "mean p50 max min" of the integers in FILE (one per line).
stats() {
	sort -n "$1" | awk '{ v[NR] = $1; s += $1 } END {
		if (NR == 0) { print "n/a n/a n/a n/a"; exit }
		printf "%d %d %d %d\n", s / NR, v[int((NR + 1) / 2)], v[NR], v[1] }'
}
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "n/a"; else printf "%.1f", k / 1024 }'; }
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# time_ready NAME T0 [guestctl target]: waits for the agent, prints ms since T0.
time_ready() {
	_tgt=${3:-$CT_DIR/$1.vsock}
	if $GUESTCTL "$_tgt" health --quiet --wait "$AGENT_WAIT_MS" --pid "$(vm_pid "$1")" --time 2>t.err; then
		echo $(($(sed -n 's/.*end_ms=\([0-9]*\).*/\1/p' t.err) - $2))
	else
		note "$1: agent not ready: $(cat t.err) $(vm_tail "$1" 2 | tr '\n' ' ')" >&2
		return 1
	fi
}

have_vmm=no
[ -x "$VMM" ] && have_vmm=yes
have_qemu=no
[ -x /cubetest/qemu/qemu-system-x86_64 ] && have_qemu=yes
note "L1: $(uname -r), $(nproc) vCPUs, guest RAM ${L2_MEM} MiB, 1 vCPU, kernel cmdline '$L2_CMDLINE'"

# --- cube-vmm: cold boot, snapshot, restores ------------------------------------------
: >boot.ms
: >restore.ms
: >pss.kb
: >uss.kb
: >rss_clone.kb
boot_rss=""
snap_ms=""
snap_reply=""
restore1=""
if [ $have_vmm = yes ]; then
	k=1
	while [ $k -le "$N_BOOT" ]; do
		t0=$(ct_now)
		vm_boot "b$k" 2>>cmds.log
		if ms=$(time_ready "b$k" "$t0"); then
			echo "$ms" >>boot.ms
			note "cube-vmm boot $k: agent ready in $ms ms"
		fi
		if [ $k -eq 1 ] && vm_alive b1; then
			sleep 1
			boot_rss=$(field rss_kb "$($L1UTIL mem "$(vm_pid b1)")")
			t0=$(ct_now)
			snap_reply=$(vm_ctl b1 snapshot "$CT_DIR/snap" 2>&1) && snap_ms=$(($(ct_now) - t0))
			note "snapshot: $snap_ms ms wall; reply $snap_reply"
		fi
		vm_stop "b$k" >/dev/null
		k=$((k + 1))
	done
	if [ -n "$snap_ms" ]; then
		t0=$(ct_now)
		vm_restore r0 "$CT_DIR/snap" 2>>cmds.log
		restore1=$(time_ready r0 "$t0") && note "restore (one clone): agent ready in $restore1 ms"
		vm_stop r0 >/dev/null
		i=1
		while [ $i -le "$N_CLONES" ]; do
			t0=$(ct_now)
			vm_restore "c$i" "$CT_DIR/snap" 2>>cmds.log
			ms=$(time_ready "c$i" "$t0") && echo "$ms" >>restore.ms && note "restore c$i: $ms ms"
			i=$((i + 1))
		done
		sleep 3 # idle
		i=1
		while [ $i -le "$N_CLONES" ]; do
			if vm_alive "c$i"; then
				m=$($L1UTIL mem "$(vm_pid "c$i")")
				field pss_kb "$m" >>pss.kb
				field uss_kb "$m" >>uss.kb
				field rss_kb "$m" >>rss_clone.kb
			fi
			i=$((i + 1))
		done
		i=1
		while [ $i -le "$N_CLONES" ]; do
			vm_stop "c$i" >/dev/null
			i=$((i + 1))
		done
	fi
fi

# --- QEMU -M microvm, the peer ----------------------------------------------------------
: >qemu.ms
qemu_rss=""
if [ $have_qemu = yes ]; then
	k=1
	while [ $k -le "$N_BOOT" ]; do
		cid=$((10 + k)) # a fresh CID each run: vhost-vsock releases the old one lazily
		t0=$(ct_now)
		qemu_boot "q$k" "$cid" 2>>cmds.log
		if ms=$(time_ready "q$k" "$t0" "vsock:$cid"); then
			echo "$ms" >>qemu.ms
			note "QEMU boot $k: agent ready in $ms ms"
			if [ $k -eq 1 ]; then
				sleep 1
				qemu_rss=$(field rss_kb "$($L1UTIL mem "$(vm_pid q1)")")
			fi
		fi
		kill "$(vm_pid "q$k")" 2>/dev/null
		vm_wait_exit "q$k" 30 >/dev/null
		k=$((k + 1))
	done
fi

# --- table ----------------------------------------------------------------------------
set -- $(stats boot.ms)
boot_mean=$1 boot_p50=$2 boot_max=$3 boot_min=$4
set -- $(stats qemu.ms)
q_mean=$1 q_p50=$2 q_max=$3 q_min=$4
set -- $(stats restore.ms)
r_mean=$1 r_p50=$2 r_max=$3
set -- $(stats pss.kb)
pss_mean=$1 pss_max=$3
set -- $(stats uss.kb)
uss_mean=$1 uss_max=$3
set -- $(stats rss_clone.kb)
rssc_mean=$1
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", a / b; else print "n/a" }'; }
row() { printf '| %-46s | %-20s | %-20s | %-10s |\n' "$1" "$2" "$3" "$4"; }

echo
echo "## cube-vmm vs QEMU -M microvm, nested in L1 ($(nproc) vCPU L1; guest: ${L2_MEM} MiB, 1 vCPU; same vmlinux + rootfs)"
echo
row "metric" "cube-vmm" "QEMU microvm" "QEMU/cube"
row "----------------------------------------------" "--------------------" "--------------------" "----------"
row "cold boot to agent ready, ms (mean of $N_BOOT; min)" "$boot_mean; $boot_min" "$q_mean; $q_min" "$(ratio "$q_mean" "$boot_mean")"
snap_vmm_ms=$(echo "$snap_reply" | sed -n 's/.*"ms":\([0-9]*\).*/\1/p')
row "snapshot (ctl round trip; VMM's own), ms" "${snap_ms:-n/a}; ${snap_vmm_ms:-n/a}" "-" ""
row "restore to agent ready, one clone, ms" "${restore1:-n/a}" "-" "$(ratio "$q_mean" "$restore1")"
row "restore x$N_CLONES in a row, ms (mean / p50 / max)" "$r_mean / $r_p50 / $r_max" "-" "$(ratio "$q_mean" "$r_mean")"
row "idle clone PSS, MiB (mean / max)" "$(mib "$pss_mean") / $(mib "$pss_max")" "-" ""
row "idle clone USS (private), MiB (mean / max)" "$(mib "$uss_mean") / $(mib "$uss_max")" "-" ""
row "idle clone RSS, MiB (mean)" "$(mib "$rssc_mean")" "-" ""
row "guest RAM, MiB" "$L2_MEM" "$L2_MEM" ""
row "VMM process RSS after cold boot, MiB" "$(mib "$boot_rss")" "$(mib "$qemu_rss")" "$(ratio "$qemu_rss" "$boot_rss")"
echo
[ $have_vmm = no ] && echo "cube-vmm was not in the payload (not built): its column is empty."
echo "Ratios compare QEMU's cold boot with cube-vmm's cold boot and restores (larger = cube-vmm faster)."
echo "Agent ready: cube-vmm over its vsock Unix socket (guestctl UDS health);"
echo "QEMU over AF_VSOCK via L1's vhost_vsock (guestctl vsock:CID health). Timed from just before"
echo "the VMM process starts (L1 CLOCK_MONOTONIC) to the first answered GET /health."
echo "PSS/USS: /proc/PID/smaps_rollup of each idle cube-vmm clone ($N_CLONES running at once,"
echo "memory file mapped MAP_PRIVATE from L1's tmpfs). L1 is QEMU TCG: absolute times are slow,"
echo "compare the columns."
echo
echo "Commands (inside L1; CT_DIR=$CT_DIR):"
sed -e 's/^+ /    /' -e "s|$CT_DIR/[a-z]*[0-9]*\.|$CT_DIR/NAME.|g" -e 's/--id [a-z0-9]*/--id NAME/' \
	-e 's/guest-cid=[0-9]*/guest-cid=CID/' -e 's/--cmdline \(.*\) --vsock/--cmdline "\1" --vsock/' \
	-e 's/-append console=ttyS0 \(.*\) -drive/-append "console=ttyS0 \1" -drive/' cmds.log | sort -u
echo "    $GUESTCTL \$CT_DIR/NAME.vsock health --wait $AGENT_WAIT_MS --time   (QEMU: vsock:CID)"
echo "    $VMM ctl \$CT_DIR/NAME.ctl snapshot \$CT_DIR/snap"
echo "Reproduce: make qemu-bench  (N_BOOT=$N_BOOT, N_CLONES=$N_CLONES)"
