/*
 * control.h - the control socket: newline-delimited JSON over a Unix
 * stream socket, served on the loop thread.
 *
 *   {"op":"ping"}                      -> {"ok":true}
 *   {"op":"pause"} / {"op":"resume"}   -> {"ok":true,"state":"paused"|"running"}
 *   {"op":"snapshot","dir":"/snap/x"}  -> {"ok":true,"dir":"/snap/x","ms":12,"memory_bytes":268435456}
 *   {"op":"stats"}                     -> {"ok":true,"state":..,"uptime_ms":..,"memory":{..},"vcpus":[..],"pid":..}
 *   {"op":"shutdown"}                  -> {"ok":true}, then the VMM exits with VMM_EXIT_OK
 *
 * Errors: {"ok":false,"error":"..."}; the connection stays usable, except
 * after a request line longer than CONTROL_MAX_LINE, which is refused and
 * the connection closed.
 */
#ifndef CUBE_VMM_CONTROL_H
#define CUBE_VMM_CONTROL_H

#include <stddef.h>

#include "vmm.h"

#define CONTROL_MAX_LINE (64 * 1024)

struct control;

/* Binds and listens at path (an old socket file there is replaced). */
struct control *control_open(struct vm *vm, const char *path, char *err, size_t errsz);
/* Closes every connection and removes the socket file. */
void control_close(struct control *c);

/* The client side (cube-vmm ctl): sends {"op":op} (with "dir":arg for
 * snapshot), prints the reply line on stdout. Returns 0 iff "ok":true. */
int control_request(const char *socket_path, const char *op, const char *arg);

#endif
