#!/bin/sh
# Creates what compose.yaml mounts as secrets, once: the four keys, the
# Redis password and ACL file, and a local CA with a certificate for
# localhost for the TLS front. Existing files are kept (rotating the
# pairwise key changes every subject every RP knows). Needs openssl.
#
#   ./init.sh [DIR]      # DIR defaults to this script's directory
set -eu
dir=${1:-$(dirname "$0")}
umask 077
mkdir -p "$dir/secrets" "$dir/certs"
chmod 0700 "$dir/secrets" "$dir/certs"

# new FILE COMMAND...: runs COMMAND into FILE unless FILE exists.
new() {
	f=$1
	shift
	if [ -s "$f" ]; then
		echo "keeping $f"
		return
	fi
	"$@" >"$f.tmp"
	mv "$f.tmp" "$f"
	echo "created $f"
}

for k in pairwise token cookie kek; do
	new "$dir/secrets/$k.key" openssl rand -hex 32
done
new "$dir/secrets/redis.password" openssl rand -hex 24
pw=$(cat "$dir/secrets/redis.password")
hash=$(printf %s "$pw" | openssl dgst -sha256 -r | cut -d' ' -f1)
# The watashi user may touch only its own prefix and channels, and no
# administrative or dangerous command; the default user is off.
new "$dir/secrets/redis.acl" printf '%s\n' \
	"user default off" \
	"user watashi on #$hash ~watashi:* &watashi:* +@all -@dangerous"

if [ ! -s "$dir/certs/server.crt" ]; then
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 825 \
		-subj "/CN=Watashi Compose local CA" -keyout "$dir/certs/ca.key" -out "$dir/certs/ca.crt" 2>/dev/null
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-subj "/CN=localhost" -keyout "$dir/certs/server.key" -out "$dir/certs/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$dir/certs/server.ext"
	openssl x509 -req -in "$dir/certs/server.csr" -CA "$dir/certs/ca.crt" -CAkey "$dir/certs/ca.key" \
		-CAcreateserial -days 825 -sha256 -extfile "$dir/certs/server.ext" -out "$dir/certs/server.crt" 2>/dev/null
	rm -f "$dir/certs/server.csr" "$dir/certs/server.ext" "$dir/certs/ca.srl"
	echo "created $dir/certs/server.crt (trust $dir/certs/ca.crt in your browser to test)"
else
	echo "keeping $dir/certs/server.crt"
fi

# Readable by the containers' users; the 0700 directories keep other host
# users out. The CA key is not needed by any container.
chmod 0444 "$dir"/secrets/* "$dir/certs/server.crt" "$dir/certs/server.key" "$dir/certs/ca.crt"
chmod 0400 "$dir/certs/ca.key"
