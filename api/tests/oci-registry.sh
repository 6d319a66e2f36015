#!/bin/bash
# oci-registry.sh - cube-oci against a real registry: Debian's docker-registry
# on loopback, first over plain HTTP (--insecure-registry), then over HTTPS
# with a CA made here (--ca-file; without it the certificate must be refused).
# The image is built by hand: two layer tars (the second with a whiteout and
# an opaque directory), a config and an OCI manifest, pushed with the
# distribution API (POST + PUT per blob, PUT of the manifest). The ext4 that
# cube-oci writes is then read back with debugfs.
#
#   bash api/tests/oci-registry.sh build/cube-oci AGENT
#
# Ends with "oci-registry: N passed, M failed".
set -euo pipefail

OCI=${1:?usage: oci-registry.sh CUBE_OCI AGENT}
AGENT=${2:?usage: oci-registry.sh CUBE_OCI AGENT}
PATH=$PATH:/usr/sbin:/sbin
die() {
	echo "oci-registry: error: $*" >&2
	exit 1
}
for t in docker-registry curl openssl debugfs tar gzip sha256sum; do
	command -v $t >/dev/null || die "$t not found (run: make deps)"
done
[ -x "$OCI" ] || die "$OCI missing (make $OCI)"
[ -x "$AGENT" ] || die "$AGENT missing"

TMP=$(mktemp -d /tmp/oci-registry-test.XXXXXX)
REG_PID=
cleanup() {
	[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

pass=0
fail=0
ok() {
	echo "  ok   $*"
	pass=$((pass + 1))
}
bad() {
	echo "  FAIL $*"
	fail=$((fail + 1))
}
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}

# --- the image -----------------------------------------------------------
echo "oci-registry: building the image"
mkdir -p "$TMP/l1/etc" "$TMP/l1/bin" "$TMP/l1/var/lib/data" "$TMP/l1/opt/old" "$TMP/l2/app" "$TMP/l2/var/lib/data" \
	"$TMP/l2/opt/old"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$TMP/l1/etc/passwd"
printf '#!/bin/sh\n' >"$TMP/l1/bin/sh"
chmod 755 "$TMP/l1/bin/sh"
ln "$TMP/l1/bin/sh" "$TMP/l1/bin/sh-hardlink"
echo doomed >"$TMP/l1/var/lib/data/doomed"
echo hidden >"$TMP/l1/opt/old/hidden"
ln -s ../bin/sh "$TMP/l1/etc/shell-link"
echo "hello from the registry" >"$TMP/l2/app/hello"
: >"$TMP/l2/var/lib/data/.wh.doomed"
: >"$TMP/l2/opt/old/.wh..wh..opq"
echo fresh >"$TMP/l2/opt/old/fresh"
tar --numeric-owner --owner=0 --group=0 -C "$TMP/l1" -cf - . | gzip -n >"$TMP/layer1.tar.gz"
tar --numeric-owner --owner=1000 --group=1000 -C "$TMP/l2" -cf "$TMP/layer2.tar" .

digest() { echo "sha256:$(sha256sum "$1" | cut -c1-64)"; }
size() { stat -c %s "$1"; }
cat >"$TMP/config.json" <<'EOF'
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin:/bin","MODE=registry"],"WorkingDir":"/app","ExposedPorts":{"9000/tcp":{}},"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[]}}
EOF
cat >"$TMP/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$(digest "$TMP/config.json")","size":$(size "$TMP/config.json")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$(digest "$TMP/layer1.tar.gz")","size":$(size "$TMP/layer1.tar.gz")},
           {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$(digest "$TMP/layer2.tar")","size":$(size "$TMP/layer2.tar")}]}
EOF

# --- the registry ----------------------------------------------------------
start_registry() { # start_registry SCHEME
	local scheme=$1 tls="" try
	if [ "$scheme" = https ]; then
		tls="  tls:
    certificate: $TMP/server.pem
    key: $TMP/server.key"
	fi
	for try in 1 2 3 4 5; do
		PORT=$((20000 + RANDOM % 30000))
		cat >"$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $TMP/storage
http:
  addr: 127.0.0.1:$PORT
$tls
EOF
		docker-registry serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
		REG_PID=$!
		for _ in $(seq 50); do
			if curl -s -o /dev/null --cacert "$TMP/ca.pem" --resolve "localhost:$PORT:127.0.0.1" \
				"$scheme://localhost:$PORT/v2/"; then
				return 0
			fi
			kill -0 "$REG_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=
	done
	cat "$TMP/registry.log" >&2
	die "docker-registry did not start"
}
stop_registry() {
	kill "$REG_PID" 2>/dev/null || true
	wait "$REG_PID" 2>/dev/null || true
	REG_PID=
}

push_blob() { # push_blob FILE
	local loc
	loc=$(curl -fsS -X POST -D - -o /dev/null "http://127.0.0.1:$PORT/v2/test/img/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	[ -n "$loc" ] || die "no upload location"
	case $loc in /*) loc="http://127.0.0.1:$PORT$loc" ;; esac
	case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
	curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" \
		"$loc${sep}digest=$(digest "$1")" -o /dev/null || die "push of $1 failed"
}

# A CA and a certificate for "localhost", for the HTTPS part (a name: mbedtls
# 2.28 matches DNS names only, not IP addresses in the certificate).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=oci-test-ca \
	-keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
	-keyout "$TMP/server.key" -out "$TMP/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$TMP/ext.cnf"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial -days 2 \
	-extfile "$TMP/ext.cnf" -out "$TMP/server.pem" 2>/dev/null

echo "oci-registry: pushing to docker-registry over HTTP"
start_registry http
push_blob "$TMP/layer1.tar.gz"
push_blob "$TMP/layer2.tar"
push_blob "$TMP/config.json"
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$TMP/manifest.json" \
	"http://127.0.0.1:$PORT/v2/test/img/manifests/1" -o /dev/null || die "manifest push failed"

check_image() { # check_image EXT4 LABEL
	local img=$1 l=$2
	check "$l: /app/hello from layer 2" sh -c "debugfs -R 'cat /app/hello' '$img' 2>/dev/null | grep -q 'hello from the registry'"
	check "$l: /app/hello owned by 1000" sh -c "debugfs -R 'stat /app/hello' '$img' 2>/dev/null | grep -q 'User:  1000'"
	check "$l: whiteout removed /var/lib/data/doomed" sh -c "! debugfs -R 'ls /var/lib/data' '$img' 2>/dev/null | grep -q doomed"
	check "$l: opaque /opt/old hides 'hidden'" sh -c "! debugfs -R 'ls /opt/old' '$img' 2>/dev/null | grep -q hidden"
	check "$l: opaque /opt/old keeps 'fresh'" sh -c "debugfs -R 'ls /opt/old' '$img' 2>/dev/null | grep -q fresh"
	check "$l: /sbin/init -> the agent" sh -c "debugfs -R 'stat /sbin/init' '$img' 2>/dev/null | grep -q 'Fast link dest: \"/usr/bin/cube-agent\"'"
	check "$l: agent injected, same bytes" sh -c "debugfs -R 'dump /usr/bin/cube-agent $TMP/agent.out' '$img' 2>/dev/null && cmp -s '$TMP/agent.out' '$AGENT'"
	check "$l: user in /etc/passwd" sh -c "debugfs -R 'cat /etc/passwd' '$img' 2>/dev/null | grep -q '^user:x:1000:1000:user:/home/user:'"
	check "$l: /tmp is 1777" sh -c "debugfs -R 'stat /tmp' '$img' 2>/dev/null | grep -q 'Mode:  01777'"
	check "$l: symlink kept" sh -c "debugfs -R 'stat /etc/shell-link' '$img' 2>/dev/null | grep -q 'Fast link dest: \"../bin/sh\"'"
	check "$l: hard link kept" sh -c "debugfs -R 'stat /bin/sh-hardlink' '$img' 2>/dev/null | grep -q 'Links: 2'"
	check "$l: e2fsck clean" e2fsck -fn "$img"
}

echo "oci-registry: cube-oci --insecure-registry"
if "$OCI" --image "127.0.0.1:$PORT/test/img:1" --insecure-registry --agent "$AGENT" --out "$TMP/http.ext4" \
	--config-out "$TMP/http.json" --writable-layer-size 16M >"$TMP/http.log" 2>&1; then
	ok "http: cube-oci pulled and built"
	sed 's/^/    /' "$TMP/http.log"
	check_image "$TMP/http.ext4" http
	check "http: image config recorded" grep -q '"exposedPorts":\["9000/tcp"\]' "$TMP/http.json"
	check "http: progress lines" sh -c "grep -q '^pulling 100%' '$TMP/http.log' && grep -q '^unpacking 100%' '$TMP/http.log' && grep -q '^rootfs 100%' '$TMP/http.log'"
else
	bad "http: cube-oci failed: $(tail -3 "$TMP/http.log")"
fi
# The appliance's own static mke2fs (thirdparty/ e2fsprogs), when it is built.
APPLIANCE_MKE2FS=${CUBEOS_CACHE:-/var/cache/cubeos}/thirdparty/e2fsprogs/bin/mke2fs
if [ -x "$APPLIANCE_MKE2FS" ]; then
	if "$OCI" --image "127.0.0.1:$PORT/test/img:1" --insecure-registry --agent "$AGENT" --out "$TMP/tp.ext4" \
		--mke2fs "$APPLIANCE_MKE2FS" >"$TMP/tp.log" 2>&1; then
		ok "appliance mke2fs: built"
		check_image "$TMP/tp.ext4" "appliance mke2fs"
	else
		bad "appliance mke2fs: cube-oci failed: $(tail -3 "$TMP/tp.log")"
	fi
else
	echo "  skip the appliance's mke2fs (not built: make thirdparty)"
fi
"$OCI" --image "127.0.0.1:$PORT/test/nothing:1" --insecure-registry --agent "$AGENT" --out "$TMP/x.ext4" \
	>"$TMP/404.log" 2>&1 && bad "unknown image accepted" ||
	check "unknown image: not_found" grep -q 'error (not_found)' "$TMP/404.log"
# Disk full: the scratch directory on a tmpfs too small for the image.
mkdir -p "$TMP/small"
if mount -t tmpfs -o size=64k tmpfs "$TMP/small" 2>/dev/null; then
	"$OCI" --image "127.0.0.1:$PORT/test/img:1" --insecure-registry --agent "$AGENT" --work "$TMP/small/work" \
		--out "$TMP/full.ext4" >"$TMP/full.log" 2>&1 && bad "disk full not noticed" ||
		check "disk full: disk_full" grep -q 'error (disk_full)' "$TMP/full.log"
	umount "$TMP/small"
else
	echo "  skip disk full (cannot mount a tmpfs here)"
fi
stop_registry

echo "oci-registry: the same storage over HTTPS"
start_registry https
if "$OCI" --image "localhost:$PORT/test/img:1" --ca-file "$TMP/ca.pem" --agent "$AGENT" --out "$TMP/https.ext4" \
	>"$TMP/https.log" 2>&1; then
	ok "https: cube-oci verified the certificate and built"
	check_image "$TMP/https.ext4" https
else
	bad "https: cube-oci failed: $(tail -3 "$TMP/https.log")"
fi
if "$OCI" --image "localhost:$PORT/test/img:1" --agent "$AGENT" --out "$TMP/untrusted.ext4" \
	>"$TMP/untrusted.log" 2>&1; then
	bad "https: an unknown CA was accepted"
else
	check "https: unknown CA refused" grep -q 'not trusted' "$TMP/untrusted.log"
fi
stop_registry

echo "oci-registry: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
