#!/usr/bin/env bash
# Makes the certificates of a local TLS set-up with openssl (README, "TLS"):
#
#   scripts/make-certs.sh OUT_DIR [DEVICE_ID...]
#
#   OUT_DIR/ca.crt, ca.key          a local CA (TLS_CA; keep ca.key off the gateway)
#   OUT_DIR/server.crt, server.key  the gateway's certificate for localhost, 127.0.0.1 and ::1
#                                   plus SERVER_SANS (TLS_CERT, TLS_KEY)
#   OUT_DIR/devices/ID.crt, ID.key  one client certificate per device id, CN = the device id
#                                   (default: one for sim-001)
#   OUT_DIR/other-ca.crt            another CA, and a client certificate it signed
#   OUT_DIR/devices/other-ca-ID.crt, .key   for the first device id: what a stranger's device
#                                   holds; TLS_CLIENT_CERT=required refuses it (for tests)
#
# Files that exist are kept: running it again with new device ids signs their certificates with
# the same CA. SERVER_SANS adds names to the server certificate, e.g.
#   SERVER_SANS='DNS:gateway.lan,IP:192.168.1.10' scripts/make-certs.sh certs
# Keys are EC P-256, unencrypted, mode 600.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = '-h' ] || [ "$1" = '--help' ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  [ $# -ge 1 ] && exit 0
  exit 2
fi
command -v openssl >/dev/null || { echo 'make-certs: openssl is not installed' >&2; exit 1; }

out=$1
shift
devices=("$@")
[ ${#devices[@]} -gt 0 ] || devices=(sim-001)
for id in "${devices[@]}"; do
  if ! [[ $id =~ ^[A-Za-z0-9_.-]{1,64}$ ]]; then
    echo "make-certs: device id '$id' must match [A-Za-z0-9_.-]{1,64}" >&2
    exit 2
  fi
done

umask 077
mkdir -p "$out/devices"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The certificates are for a local deployment or a test; 825 days is the longest TLS clients
# accept for a server certificate.
days_ca=3650
days_leaf=825

new_key() {
  [ -f "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

new_ca() { # key crt common-name
  new_key "$1"
  [ -f "$2" ] || openssl req -x509 -new -key "$1" -sha256 -days "$days_ca" -subj "/CN=$3" \
    -addext 'basicConstraints=critical,CA:TRUE,pathlen:0' \
    -addext 'keyUsage=critical,keyCertSign,cRLSign' \
    -addext 'subjectKeyIdentifier=hash' \
    -out "$2"
}

sign() { # ca-crt ca-key key crt common-name extensions
  [ -f "$4" ] && return
  new_key "$3"
  openssl req -new -key "$3" -subj "/CN=$5" -out "$work/req.csr"
  printf '%s\n' "$6" >"$work/ext.cnf"
  openssl x509 -req -in "$work/req.csr" -CA "$1" -CAkey "$2" -sha256 -days "$days_leaf" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/ext.cnf" -out "$4" 2>/dev/null
}

client_ext='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid'

new_ca "$out/ca.key" "$out/ca.crt" 'sensor-gateway local CA'

sans='DNS:localhost,IP:127.0.0.1,IP:::1'
[ -n "${SERVER_SANS:-}" ] && sans="$sans,$SERVER_SANS"
sign "$out/ca.crt" "$out/ca.key" "$out/server.key" "$out/server.crt" localhost \
  "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

for id in "${devices[@]}"; do
  sign "$out/ca.crt" "$out/ca.key" "$out/devices/$id.key" "$out/devices/$id.crt" "$id" "$client_ext"
done

# Same CN as a real device, signed by a CA the gateway does not trust. The other CA's key is
# thrown away: nothing else is ever signed with it.
stranger="$out/devices/other-ca-${devices[0]}"
if [ ! -f "$stranger.crt" ]; then
  rm -f "$out/other-ca.crt"
  new_ca "$work/other-ca.key" "$out/other-ca.crt" 'some other CA'
  sign "$out/other-ca.crt" "$work/other-ca.key" "$stranger.key" "$stranger.crt" "${devices[0]}" \
    "$client_ext"
fi

chmod 600 "$out"/*.key "$out"/devices/*.key
chmod 644 "$out"/*.crt "$out"/devices/*.crt
echo "certificates in $out:"
(cd "$out" && find . -name '*.crt' | sort | sed 's|^\./|  |')
