#!/usr/bin/env bash
# Makes a throw-away PKI for TLS tests in DIR: two CAs (ca = the real one, other-ca = a stranger), a
# server certificate for localhost/127.0.0.1, and client certificates "collector" and "operator" from
# ca plus "collector" from other-ca. P-256 keys, valid two days.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {  # name
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=etl-test-$1" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() {  # ca name cn san usage
  key "$2.key"
  openssl req -new -key "$2.key" -out "$2.csr" -subj "/CN=$3" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$4" "$5" > "$2.ext"
  openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial -out "$2.pem" -days 2 \
    -extfile "$2.ext" 2>/dev/null
  rm -f "$2.csr" "$2.ext"
}
ca ca
ca other-ca
leaf ca server localhost "DNS:localhost,IP:127.0.0.1" serverAuth
leaf ca collector collector "DNS:collector" clientAuth
leaf ca operator operator "DNS:operator" clientAuth
leaf other-ca stranger-collector collector "DNS:collector" clientAuth
