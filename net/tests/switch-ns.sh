#!/usr/bin/env bash
# The sandbox switch on a real interface, between network namespaces made
# here (nothing outside them is touched):
#
#   guest  g0 192.168.127.2/24 --veth-- tap0 192.168.127.1  host (the appliance's role)
#                                        up0 203.0.113.254 --veth-- n0 203.0.113.1  net (a web server)
#                                        lan0 10.0.0.1     --veth-- l0 10.0.0.5     lan (a private host)
#
# "host" routes the sandbox's own address 100.96.0.7 to tap0 (a static
# neighbour: the guest's MAC), forwards, and runs net-switchctl on tap0. The
# switch is told that 203.0.113.0/24 (a documentation range, always blocked
# by default) is open here, since this test's "internet" lives there.
#
#   net/tests/switch-ns.sh build/net/net-switchctl
#
# Last line: "switch-ns: N passed, M failed". Needs root.
set -uo pipefail

CTL=$(realpath "${1:?usage: switch-ns.sh NET-SWITCHCTL}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ID=$$
G=swg$ID H=swh$ID N=swn$ID L=swl$ID
WORK=$(mktemp -d /tmp/switch-ns.XXXXXX)
pass=0 fail=0

ok() { echo "  ok   $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL $*"; fail=$((fail + 1)); }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Everything started here runs in one of the namespaces: killing what runs
# in them ends it all, whichever way the test ends.
cleanup() {
  trap - EXIT INT TERM
  exec 7>&- 2>/dev/null
  for ns in $G $H $N $L; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [[ $(id -u) != 0 ]]; then
  echo "switch-ns: needs root (network namespaces, BPF)"
  echo "switch-ns: 0 passed, 1 failed"
  exit 1
fi

# --- the namespaces -------------------------------------------------------------
for ns in $G $H $N $L; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
ip link add g0 netns $G type veth peer name tap0 netns $H
ip link add n0 netns $N type veth peer name up0 netns $H
ip link add l0 netns $L type veth peer name lan0 netns $H
in_ns $G ip addr add 192.168.127.2/24 dev g0
in_ns $G ip link set g0 up
in_ns $G ip route add default via 192.168.127.1
in_ns $H ip addr add 192.168.127.1/24 dev tap0
in_ns $H ip addr add 203.0.113.254/24 dev up0
in_ns $H ip addr add 10.0.0.1/24 dev lan0
for d in tap0 up0 lan0; do in_ns $H ip link set "$d" up; done
in_ns $N ip addr add 203.0.113.1/24 dev n0
in_ns $N ip link set n0 up
in_ns $N ip route add default via 203.0.113.254
in_ns $L ip addr add 10.0.0.5/24 dev l0
in_ns $L ip link set l0 up
in_ns $L ip route add default via 10.0.0.1
in_ns $H sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tap0.rp_filter=0
GMAC=$(in_ns $G cat /sys/class/net/g0/address)
in_ns $H ip route add 100.96.0.7/32 dev tap0
in_ns $H ip neigh add 100.96.0.7 lladdr "$GMAC" dev tap0 nud permanent

# --- servers --------------------------------------------------------------------
# A web server on the "internet" that writes down who connected; a DNS-port echo
# and the "appliance API" on the gateway; an SSH-like port on the private host.
cat > "$WORK/serve.py" <<'PY'
import socket, sys, threading
kind, addr, port, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(2048)
        open(log, "a").write("%s\n" % peer[0])
        s.sendto(b"echo:" + data, peer)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(16)
while True:
    c, peer = s.accept()
    open(log, "a").write("%s\n" % peer[0])
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    c.close()
PY
cat > "$WORK/client.py" <<'PY'
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(b"q", (addr, port))
        print(s.recvfrom(2048)[0].decode())
    else:
        s = socket.create_connection((addr, port), timeout=2)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print(s.recv(4096).decode().split("\r\n\r\n")[-1])
except OSError as e:
    print("error:%s" % type(e).__name__)
PY
start_server() { in_ns "$1" python3 "$WORK/serve.py" "$2" "$3" "$4" "$WORK/$5.log" >/dev/null 2>&1 & }
start_server $N tcp 203.0.113.1 80 web
start_server $N tcp 203.0.113.1 8080 web8080
start_server $H udp 192.168.127.1 53 dns
start_server $H tcp 192.168.127.1 3000 api
start_server $L tcp 10.0.0.5 22 lan
sleep 0.5
client() { in_ns $G python3 "$WORK/client.py" "$@"; }

# --- the switch -----------------------------------------------------------------
mkfifo "$WORK/ctl.in"
in_ns $H "$CTL" tap0 --guest 192.168.127.2 --host 100.96.0.7 --gateway 192.168.127.1 \
  --unblock 203.0.113.0/24 <"$WORK/ctl.in" >"$WORK/ctl.out" 2>&1 &
CTL_PID=$!
exec 7>"$WORK/ctl.in" # its commands; closing it ends it
for _ in $(seq 50); do grep -q '^ready' "$WORK/ctl.out" && break; sleep 0.1; done
if ! grep -q '^ready' "$WORK/ctl.out"; then
  echo "switch-ns: net-switchctl did not start: $(cat "$WORK/ctl.out")"
  echo "switch-ns: 0 passed, 1 failed"
  exit 1
fi
ctl() { echo "$*" >&7; sleep 0.3; }

# 1. The web server: reached, and it sees the sandbox's own address (SNAT),
#    the answer comes back (DNAT).
out=$(client tcp 203.0.113.1 80)
[[ $out == hello ]] && ok "sandbox reaches the web server: $out" || bad "web server: $out"
grep -qx 100.96.0.7 "$WORK/web.log" 2>/dev/null && ok "the server saw 100.96.0.7 (SNAT)" \
  || bad "the server saw: $(cat "$WORK/web.log" 2>/dev/null)"

# 2. The gateway: DNS answered; the appliance's API port is not reachable.
out=$(client udp 192.168.127.1 53)
[[ $out == echo:q ]] && ok "the gateway's DNS port answers" || bad "DNS on the gateway: $out"
out=$(client tcp 192.168.127.1 3000)
[[ $out == error:* && ! -s $WORK/api.log ]] && ok "the appliance's port 3000 is unreachable ($out)" \
  || bad "the appliance's port 3000: $out"

# 3. A private range: dropped, even though the host routes it.
out=$(client tcp 10.0.0.5 22)
[[ $out == error:* && ! -s $WORK/lan.log ]] && ok "10.0.0.5 is unreachable ($out)" || bad "10.0.0.5: $out"

# 4. A live policy change: denyOut the web server's range, and a new flow is
#    cut at once; allowOut its address, and new flows go again.
ctl deny 203.0.113.0/24
out=$(client tcp 203.0.113.1 8080)
[[ $out == error:* ]] && ok "denyOut 203.0.113.0/24 applies to the running sandbox at once ($out)" \
  || bad "after denyOut: $out"
ctl allow 203.0.113.1/32
out=$(client tcp 203.0.113.1 8080)
[[ $out == hello ]] && ok "allowOut 203.0.113.1/32 opens it again, live" || bad "after allowOut: $out"

# 5. The audit log names each new flow with its verdict.
sleep 0.3
grep -q 'dst=203.0.113.1:80 verdict=allow reason=default' "$WORK/ctl.out" && ok "audit: the web flow allowed" \
  || bad "audit lacks the web flow: $(grep audit "$WORK/ctl.out")"
grep -q 'dst=10.0.0.5:22 verdict=drop reason=blocked' "$WORK/ctl.out" && ok "audit: 10.0.0.5 dropped, blocked" \
  || bad "audit lacks 10.0.0.5"
grep -q 'dst=192.168.127.1:3000 verdict=drop reason=appliance' "$WORK/ctl.out" \
  && ok "audit: the appliance's port dropped" || bad "audit lacks the appliance's port"
grep -q 'dst=203.0.113.1:8080 verdict=drop reason=rule' "$WORK/ctl.out" && ok "audit: the denyOut flow dropped" \
  || bad "audit lacks the denyOut flow"
echo counters >&7
sleep 0.3
grep -q '^counters tx=[1-9]' "$WORK/ctl.out" && ok "$(grep '^counters' "$WORK/ctl.out" | tail -1)" \
  || bad "no counters: $(tail -3 "$WORK/ctl.out")"

# 6. Detached at the end: the qdisc is gone.
exec 7>&-
wait "$CTL_PID" 2>/dev/null
in_ns $H tc qdisc show dev tap0 2>/dev/null | grep -q clsact && bad "clsact left on tap0" || ok "detached at the end"

echo "switch-ns: $pass passed, $fail failed"
[[ $fail == 0 ]]
