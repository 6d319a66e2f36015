#!/usr/bin/env bash
# make run-agent: runs cube-agent in a throwaway sandbox root (see
# agent/tests/sandbox-root.sh) on this machine's loopback, ports 49983 (envd)
# and 49999 (code interpreter), until Ctrl-C. Commands the SDK runs execute
# inside that root as its own `user` (or `root`), never as this machine's
# accounts. Point an SDK at it with E2B_DEBUG=true (see docs/agent.md).
# CUBE_INIT=FILE.json applies an identity document (POST /init body) at start.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AGENT=${CUBE_AGENT:-$HERE/../build/cube-agent}
LISTEN=${CUBE_LISTEN:-127.0.0.1}

if [ -z "${CUBE_RUN_INNER:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "run-local: needs root (mount and pid namespaces, chroot)" >&2; exit 1; }
	[ -x "$AGENT" ] || { echo "run-local: $AGENT not built (run make)" >&2; exit 1; }
	[ -z "${CUBE_INIT:-}" ] || CUBE_INIT=$(readlink -f "$CUBE_INIT")
	CUBE_RUN_INNER=1 AGENT=$(readlink -f "$AGENT") CUBE_INIT=${CUBE_INIT:-} exec unshare --mount --pid --fork --kill-child \
		bash "${BASH_SOURCE[0]}" "$@"
fi

mount --make-rprivate /
ROOT=$(mktemp -d /tmp/cube-run-root.XXXXXX)
trap 'umount -R "$ROOT" 2>/dev/null || umount -Rl "$ROOT"; rmdir "$ROOT"' EXIT
. "$HERE/tests/sandbox-root.sh"
(sandbox_root_build "$ROOT" "$AGENT")
init=()
if [ -n "$CUBE_INIT" ]; then
	install -m 600 "$CUBE_INIT" "$ROOT/init.json"
	init=(--init /init.json)
fi
echo "cube-agent: envd http://$LISTEN:49983, code interpreter http://$LISTEN:49999 (Ctrl-C stops it)"
chroot "$ROOT" /cube-agent --listen "$LISTEN" "${init[@]}" "$@" &
agent_pid=$!
# This shell is PID1 of the pid namespace, which gets no default signal
# actions: pass INT/TERM on explicitly.
trap 'kill "$agent_pid" 2>/dev/null' INT TERM
wait "$agent_pid" || true
wait "$agent_pid" 2>/dev/null || true
