# accel.sh - sourced by the QEMU runners (qemu-tests/run.sh, image/*.sh):
# sets ACCEL (QEMU arguments) and ACCEL_NAME (for the log).
#
# KVM only when the host's KVM is real VMX/SVM with nesting, so that the
# appliance can run its own KVM inside; a PVM /dev/kvm cannot run a stock
# kernel at all. Otherwise TCG with an emulated SVM CPU, in which the
# appliance's kvm_amd works (slowly, but for real).
select_accel() {
	local nested="" m
	for m in kvm_intel kvm_amd; do
		[ -r /sys/module/$m/parameters/nested ] && nested=$(cat /sys/module/$m/parameters/nested)
		[ -n "$nested" ] && break
	done
	if [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] && { [ "$nested" = Y ] || [ "$nested" = 1 ]; }; then
		ACCEL="-enable-kvm -cpu host"
		ACCEL_NAME="kvm (nested=$nested)"
	else
		ACCEL="-accel tcg,thread=multi -cpu EPYC,+svm"
		ACCEL_NAME="tcg ($([ -e /sys/module/kvm_pvm ] && echo "host KVM is PVM" ||
			([ -e /dev/kvm ] && echo "host KVM without nesting" || echo "no host KVM")))"
	fi
}

# The image runners let the environment choose: ACCEL set by the caller is
# kept as it is, else select_accel decides.
accel_from_env_or_select() {
	if [ -n "${ACCEL:-}" ]; then
		ACCEL_NAME="$ACCEL (from the environment)"
	else
		select_accel
	fi
}
