#!/usr/bin/env bash
# Ensures the test tools are installed, starts loopback PostgreSQL, MariaDB and S3 endpoints, runs "$@", cleans up.
set -euo pipefail

need_pkgs=()
command -v promtool >/dev/null || need_pkgs+=(prometheus)
command -v amtool >/dev/null || need_pkgs+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
# The worker's MySQL-source tests; mariadbd lives in /usr/sbin, often not on a user's PATH.
command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || need_pkgs+=(mariadb-server)
# Packaging tests: Argo CD's health scripts are Lua 5.1.
command -v lua5.1 >/dev/null || need_pkgs+=(lua5.1)
# The PostgreSQL TLS test's throw-away CA and server certificate.
command -v openssl >/dev/null || need_pkgs+=(openssl)
if ((${#need_pkgs[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test-all: installing ${need_pkgs[*]} with apt" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "test-all: missing packages: ${need_pkgs[*]} (install them, e.g. sudo apt-get install ${need_pkgs[*]})" >&2
    exit 2
  fi
fi
# Packaging tests: the Helm chart is rendered by Helm's own engine (PyPI helm-python-sdk).
if ! python3 -c 'import helm_python' 2>/dev/null; then
  echo "test-all: installing helm-python-sdk with pip" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore helm-python-sdk==0.2.2 ||
    { echo "test-all: cannot install helm-python-sdk (pip install helm-python-sdk)" >&2; exit 2; }
fi
# The worker's S3 test: moto's S3 server stands in for an S3-compatible store on loopback.
if ! python3 -c 'import moto.server, flask' 2>/dev/null; then
  echo "test-all: installing moto[server] with pip" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'moto[server]==5.2.1' ||
    { echo "test-all: cannot install moto (pip install 'moto[server]')" >&2; exit 2; }
fi
# The Debian prometheus and mariadb packages start daemons on install; the tests run their own.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter mariadb; do
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_dir=$(mktemp -d /tmp/medplat-pg.XXXXXX)
pg_port=$((20000 + RANDOM % 20000))
run_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# TLS for the worker's sslMode tests: a throw-away CA and a server certificate for the name
# "localhost" only, so verify-full towards 127.0.0.1 must fail on the name.
tls="$pg_dir/tls"
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=medplat test CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 2 -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
chmod 600 "$tls/server.key" "$tls/ca.key"
if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$pg_dir"; fi
run_pg "$pg_bin/initdb" -D "$pg_dir/data" -U medplat --auth=trust -E UTF8 >/dev/null
run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" \
  start >/dev/null
s3_port=$((20000 + RANDOM % 20000))
while [[ $s3_port -eq $pg_port ]]; do s3_port=$((20000 + RANDOM % 20000)); done
python3 -m moto.server -H 127.0.0.1 -p "$s3_port" >"$pg_dir/moto.log" 2>&1 &
s3_pid=$!
# A second moto that checks every request's SigV4 signature (the first accepts any key).
s3s_port=$((s3_port + 1))
while [[ $s3s_port -eq $pg_port ]]; do s3s_port=$((s3s_port + 1)); done
python3 -m moto.server -H 127.0.0.1 -p "$s3s_port" >"$pg_dir/moto-signed.log" 2>&1 &
s3s_pid=$!
# A third moto that speaks only HTTPS, with the throw-away CA's certificate for "localhost".
s3t_port=$((s3s_port + 1))
while [[ $s3t_port -eq $pg_port ]]; do s3t_port=$((s3t_port + 1)); done
python3 -m moto.server -H 127.0.0.1 -p "$s3t_port" -c "$tls/server.crt" -k "$tls/server.key" \
  >"$pg_dir/moto-tls.log" 2>&1 &
s3t_pid=$!
my_pid=
cleanup() {
  kill "$s3_pid" "$s3s_pid" "$s3t_pid" >/dev/null 2>&1 || true
  # mariadbd is this shell's child: wait for its shutdown so rm -rf does not race it.
  if [[ -n $my_pid ]]; then kill "$my_pid" >/dev/null 2>&1 && wait "$my_pid" 2>/dev/null || true; fi
  run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT

# MariaDB for the worker's MySQL-source tests, with TLS from the same throw-away CA.
# --no-defaults: the system's /etc/mysql config must not leak into the private server.
my_bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
my_dir="$pg_dir/mysql"
my_sock="$my_dir/sock"
my_port=$((20000 + RANDOM % 20000))
while [[ $my_port -eq $pg_port || $my_port -eq $s3_port || $my_port -eq $s3s_port || $my_port -eq $s3t_port ]]; do
  my_port=$((20000 + RANDOM % 20000))
done
my_user=$(id -un)
my_root_args=()
mkdir -p "$my_dir/tls"
# Copies, so the key can belong to mysql without loosening PostgreSQL's.
cp "$tls/ca.crt" "$tls/server.crt" "$tls/server.key" "$my_dir/tls/"
if [[ $(id -u) -eq 0 ]]; then
  my_user=mysql
  my_root_args=(--user=mysql)
  chown -R mysql "$my_dir"
  # mysql must traverse the postgres-owned temp dir to reach its own; no listing, no one else.
  chgrp mysql "$pg_dir" && chmod 710 "$pg_dir"
fi
mariadb-install-db --no-defaults --datadir="$my_dir/data" --user="$my_user" \
  --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve >"$my_dir/install.log" 2>&1 ||
  { echo "with-services: mariadb-install-db failed" >&2; cat "$my_dir/install.log" >&2; exit 2; }
"$my_bin" --no-defaults --datadir="$my_dir/data" --socket="$my_sock" --port="$my_port" \
  --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$my_dir/pid" --log-error="$my_dir/error.log" \
  --ssl-cert="$my_dir/tls/server.crt" --ssl-key="$my_dir/tls/server.key" --ssl-ca="$my_dir/tls/ca.crt" \
  "${my_root_args[@]}" >"$my_dir/stderr" 2>&1 &
my_pid=$!
for _ in $(seq 300); do
  mariadb-admin --no-defaults --socket="$my_sock" -u root ping >/dev/null 2>&1 && break
  kill -0 "$my_pid" 2>/dev/null || break
  sleep 0.1
done
mariadb-admin --no-defaults --socket="$my_sock" -u root ping >/dev/null 2>&1 ||
  # Errors before --log-error is opened (a bad option, say) go to stderr.
  { echo "with-services: mariadbd did not start" >&2; cat "$my_dir/stderr" "$my_dir/error.log" >&2 2>/dev/null || true; exit 2; }
mariadb --no-defaults --socket="$my_sock" -u root -e "
  CREATE USER 'medplat'@'127.0.0.1' IDENTIFIED BY 'medplat-test-password';
  GRANT ALL ON *.* TO 'medplat'@'127.0.0.1';
  CREATE USER 'medplat'@'localhost' IDENTIFIED BY 'medplat-test-password';
  GRANT ALL ON *.* TO 'medplat'@'localhost';"

for port in "$s3_port" "$s3s_port" "$s3t_port"; do
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
done
# One line each: the key id and the secret of an IAM user that exists only in that moto.
s3s_out=$(python3 "$(dirname "${BASH_SOURCE[0]}")/moto-signed-s3.py" "http://127.0.0.1:$s3s_port" medplat-signed) ||
  { echo "with-services: cannot prepare the signature-checking moto" >&2; cat "$pg_dir/moto-signed.log" >&2; exit 2; }
mapfile -t s3s_key <<<"$s3s_out"

export MEDPLAT_TEST_PG_URL="postgresql://medplat@127.0.0.1:$pg_port/postgres"
export MEDPLAT_TEST_PG_CA="$tls/ca.crt"
# MariaDB over TCP; it offers TLS with the certificate MEDPLAT_TEST_PG_CA signed.
export MEDPLAT_TEST_MYSQL_URL="mysql://medplat:medplat-test-password@127.0.0.1:$my_port/"
export MEDPLAT_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
# Bucket medplat-signed, readable and writable only with this key pair, correctly signed.
export MEDPLAT_TEST_S3_SIGNED="http://127.0.0.1:$s3s_port ${s3s_key[0]} ${s3s_key[1]}"
# HTTPS only, with a certificate MEDPLAT_TEST_PG_CA signed for the name "localhost".
export MEDPLAT_TEST_S3_TLS="https://localhost:$s3t_port"
# Tests that need a real tool fail instead of skipping when this is set.
export MEDPLAT_REQUIRE_REAL_TOOLS=1
"$@"
