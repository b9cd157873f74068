#!/bin/sh
# gen.sh regenerates the test TLS material for tests/integration/test_http.c:
# a test CA, a server certificate for 127.0.0.1 and localhost signed by it,
# and an unrelated CA (other_ca.pem) that must NOT verify the server.
# test_http runs it at each start into a temporary directory given as the
# only argument (default: the current directory); needs openssl.
set -e
cd "${1:-.}"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.pem -days $days -subj "/CN=taskbroker test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
printf '%s\n' "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth" \
  "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server.pem -days $days -extfile server.ext
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout other_ca.key -out other_ca.pem -days $days \
  -subj "/CN=taskbroker unrelated test CA" \
  -addext "basicConstraints=critical,CA:TRUE"
rm -f server.csr server.ext ca.srl ca.key other_ca.key
