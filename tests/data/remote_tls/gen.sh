#!/bin/sh
# gen.sh makes the TLS material of tests/integration/test_remote.c: a test
# CA (ca.pem), a server certificate for 127.0.0.1 and localhost signed by
# it (server.pem, server.key), a client certificate it signs (client.pem,
# client.key), and an unrelated CA (other_ca.pem) with a client certificate
# of its own (rogue.pem, rogue.key), which the broker must refuse.
# test_remote runs it at each start into the temporary directory given as
# the only argument (default: the current directory); needs openssl.
set -e
cd "${1:-.}"
umask 077
days=36500
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days $days \
  -subj "/CN=taskbroker remote test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -x509 $ec -keyout other_ca.key -out other_ca.pem -days $days \
  -subj "/CN=taskbroker unrelated test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
# sign NAME CA USAGE SAN: NAME.pem and NAME.key, signed by CA.pem.
sign() {
  openssl req -new $ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf '%s\n' "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=$3" ${4:+"subjectAltName=$4"} > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
    -CAcreateserial -out "$1.pem" -days $days -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
sign server ca serverAuth "IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost"
sign client ca clientAuth
sign rogue other_ca clientAuth
rm -f ca.key other_ca.key ca.srl other_ca.srl
# Certificates may be read by anyone; keys by their owner only.
chmod 644 ca.pem other_ca.pem server.pem client.pem rogue.pem
