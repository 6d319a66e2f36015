# 00-l1.sh - the harness's own checks: L1 has a working /dev/kvm, and the
# peer VMM (QEMU -M microvm, copied into L1) boots the guest kernel and
# rootfs to a live agent. When the VMM tests fail and these pass, the fault
# is the VMM's, not the guest image's.

ct_register l1_kvm 60
ct_register qemu_peer_boot 300 qemu rootfs

test_l1_kvm() {
	out=$($L1UTIL kvm 2>&1) || ct_fail "$out"
	ct_pass "$out"
}

# qemu_l1 ARGS...: QEMU from the payload, through its own loader and
# libraries. It execs, so a VM's recorded pid is QEMU's own.
qemu_l1() {
	exec env TMPDIR=/tmp /cubetest/qemu/lib/ld-linux-x86-64.so.2 --library-path /cubetest/qemu/lib \
		/cubetest/qemu/qemu-system-x86_64 -L /cubetest/qemu/data "$@"
}

# qemu_boot NAME CID [extra QEMU options]: the same kernel, rootfs (a
# throwaway overlay: snapshot=on) and kernel command line as cube-vmm gets,
# vsock through L1's vhost-vsock.
qemu_boot() {
	n=$1
	cid=$2
	shift 2
	set -- -M microvm,acpi=off -enable-kvm -cpu host -m "$L2_MEM" -smp 1 -nodefaults -no-user-config \
		-display none -monitor none -no-reboot -serial "file:$CT_DIR/$n.serial" \
		-kernel "$VMLINUX" -append "console=ttyS0 $L2_CMDLINE" \
		-drive "id=d0,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=d0 \
		-device "vhost-vsock-device,guest-cid=$cid" "$@"
	echo "+ qemu-system-x86_64 $*" >&2
	_vm_spawn "$n" qemu_l1 "$@"
}

test_qemu_peer_boot() {
	t0=$(ct_now)
	qemu_boot q 3
	$GUESTCTL vsock:3 health --quiet --wait "$AGENT_WAIT_MS" --pid "$(vm_pid q)" || ct_fail "agent not reachable over vsock (CID 3)"
	t1=$(ct_now)
	out=$($GUESTCTL vsock:3 run 'echo "$(id -un) $(nproc) $(uname -r)"' 2>&1) || ct_fail "run: $out"
	ct_log "agent ready $((t1 - t0)) ms after QEMU started; run: $out"
	ct_pass "QEMU microvm: agent ready in $((t1 - t0)) ms; run -> $out"
}
