/*
 * vm.h - the one place in the control plane that runs cube-vmm.
 *
 * Every call blocks (seconds for a start, minutes for a template build under
 * emulation), so the daemons run them off their event loop, in a worker
 * thread or a child. They are thread-safe: no shared state, every fd they
 * open is close-on-exec, and they wait only for the VMM processes they
 * started themselves.
 *
 * A sandbox's VMM runs in its own session with stdin on /dev/null and its
 * output in <run_dir>/vmm.log, so it outlives a restart of the daemon that
 * started it (it is then reparented to PID1, which reaps it). Its files:
 *
 *   <run_dir>/vsock.sock      the agent, over vsock ("CONNECT 49983\n")
 *   <run_dir>/control.sock    the VMM's control socket
 *   <run_dir>/console.log     the guest console
 *   <run_dir>/vmm.log         the VMM's own log (JSON lines)
 *   <sandbox_dir>/disk.layer  the sandbox's writable disk layer
 *   <sandbox_dir>/paused/     its snapshot while paused (memory, state, disk0.layer)
 *   <template_dir>/snap/      the template's snapshot every sandbox starts from
 */
#ifndef CUBE_API_VM_H
#define CUBE_API_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct vm_spec {
	const char *id;		  /* the sandbox id: the VMM's --id, in every log line */
	const char *template_dir; /* holds snap/ */
	const char *sandbox_dir;  /* persistent: disk.layer, paused/ */
	const char *run_dir;	  /* tmpfs: sockets and logs; created if missing */
	/* The identity document for the agent's POST /init (docs/agent.md).
	 * "timestamp" and "entropy" are always replaced by fresh ones, so the
	 * guest clock is right after every restore and no two clones of one
	 * snapshot share their randomness. An "accessToken" in it is also sent
	 * as X-Access-Token, which a resumed agent asks for. NULL: "{}". */
	const char *init_json;
	/* The access token the snapshot's agent already holds, when that is not
	 * the init's own: a template made from a snapshot of a secure sandbox.
	 * Sent as X-Access-Token instead. NULL: the init's token. */
	const char *guest_token;
	/* NULL: cube-vmm next to the running program, else /usr/bin/cube-vmm. */
	const char *vmm_path;
};

/* Restores <template_dir>/snap in a new cube-vmm with a fresh disk layer,
 * waits for the agent (RESTORE_AGENT_MS, 30 s, less if the VMM dies) and posts /init. Returns
 * the VMM's pid. On failure nothing it started is left running, run_dir is
 * removed, and err says what failed (with the VMM's last log message). */
pid_t vm_start(const struct vm_spec *spec, char *err, size_t errsz);

/* Shuts the VMM down through its control socket, waits up to timeout_ms
 * for it to end, then SIGKILLs it; removes the sockets in run_dir. A pid
 * that is gone, or is no longer this sandbox's VMM, counts as stopped.
 * 0, or -1 if the process could not be ended. */
int vm_stop(pid_t pid, const struct vm_spec *spec, int timeout_ms);

/* Pauses the VM, snapshots it (memory, devices and the whole disk above the
 * base) into <sandbox_dir>/paused (written to a temporary directory that is
 * then renamed), and stops the VMM, so a paused sandbox holds no memory.
 * The disk layer is then folded into the snapshot and removed. On failure
 * the VM is resumed and keeps running. 0 or -1. */
int vm_pause(pid_t pid, const struct vm_spec *spec, char *err, size_t errsz);

/* vm_start from <sandbox_dir>/paused: same identity, fresh clock. On
 * success paused/ is removed (the new VMM keeps its files open); on failure
 * it is kept, so the resume can be tried again. */
pid_t vm_resume(const struct vm_spec *spec, char *err, size_t errsz);

/* The warm pool's half of vm_start: restores <template_dir>/snap like
 * vm_start, but the VMM comes up paused (cube-vmm restore --paused: no vCPU
 * runs, no CPU is used) and gets no /init; returns once its control socket
 * answers. spec->init_json is not used. On failure nothing is left running
 * and run_dir and the layer are removed. The VMM's paths (sockets in
 * run_dir, <sandbox_dir>/disk.layer) are fixed at this point: run_dir must
 * already be the one the sandbox will have. */
pid_t vm_prestart(const struct vm_spec *spec, char *err, size_t errsz);

/* The other half: resumes a VMM from vm_prestart, waits for the agent and
 * posts /init with spec->init_json. spec->sandbox_dir must now hold the
 * layer the VMM writes (a rename of the file it was started with is fine:
 * the VMM has it open). 0; or -1 with err set, and then the VMM is killed
 * and its run_dir and layer removed, so the caller can start the sandbox
 * cold with the same spec. */
int vm_claim(pid_t pid, const struct vm_spec *spec, char *err, size_t errsz);

/* A snapshot of the sandbox in snap_dir (which must not exist), as
 * template_build leaves one: state, memory and its disk flattened into
 * disk0.layer. A running sandbox (pid > 0) is paused for the snapshot and
 * resumed after it, keeping its identity and its end time; a paused one
 * (pid <= 0) has its paused/ snapshot hard-linked. 0, or -1 with err set and
 * nothing left in snap_dir. */
int vm_checkpoint(pid_t pid, const struct vm_spec *spec, const char *snap_dir, char *err, size_t errsz);

/* The process exists, is the VMM of this sandbox (its command line names
 * <run_dir>/control.sock) and its control socket answers a ping. */
bool vm_alive(pid_t pid, const struct vm_spec *spec);

/* What a template build starts in its guest before the snapshot (an
 * image's ENTRYPOINT and CMD, or a start command): the snapshot holds it
 * running, so every sandbox of the template starts with it. */
struct template_start {
	const char *const *argv; /* NULL-terminated; NULL or empty: start nothing */
	/* The start command's cwd, and the default cwd of every process in the
	 * template's sandboxes (the agent's defaultWorkdir). NULL: the user's
	 * home. */
	const char *cwd;
	const char *envs_json; /* a JSON object of strings, or NULL */
	/* 0: the snapshot follows once the process started. Else it waits until
	 * this guest TCP port accepts connections, and the build fails if the
	 * process ends first or probe_timeout_ms (0: 120 s) pass. */
	int probe_port;
	int probe_timeout_ms;
	/* Filled on success: what happened, for the build log. */
	char note[512];
};

/* Cold-boots kernel + rootfs (the rootfs as the read-only base, which must
 * stay where it is: every snapshot refers to it), waits for the agent,
 * starts start->argv (start may be NULL) and waits for its probe port, lets
 * the guest settle, and snapshots it into <template_dir>/snap (through a
 * temporary directory and a rename, replacing an older one), then stops the
 * VM. progress (may be NULL) is called with the phases "boot", "agent",
 * "start", "snapshot" and "done" and a percentage. 0 or -1; a failure of the
 * start command gives its exit and the end of its output in err. */
int template_build(const char *template_dir, const char *kernel, const char *rootfs, int cpus, int mem_mib,
		   struct template_start *start, void (*progress)(void *arg, int pct, const char *phase), void *arg,
		   char *err, size_t errsz);

#endif
