#!/usr/bin/env bash
# End-to-end test of TLS and tenants through the `strata` CLI: `strata token`,
# `strata serve --tenants --tls_cert --tls_key --tls_client_ca` with
# certificates made by openssl here, put/get with --token_file and the TLS
# flags, the refusals and their exit codes, token rotation by SIGHUP, and the
# log line of a plaintext node on a non-loopback address.
#
# usage: trust_cli_test.sh STRATA_BINARY SERVE_HELPERS
set -euo pipefail

STRATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HELPERS="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/trust_cli_test"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

LOG_FILES="out.txt err.txt"
# shellcheck source=serve_helpers.sh
source "$HELPERS"

run() {
  local want="$1"
  shift
  local rc=0
  timeout 60 "$STRATA" "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" -eq "$want" ] || fail "strata $* exited $rc, expected $want"
}
expect_out() { grep -q -- "$1" out.txt || fail "stdout lacks '$1'"; }
expect_err() { grep -q -- "$1" err.txt || fail "stderr lacks '$1'"; }

# --- strata token -------------------------------------------------------------
run 0 token --tenant a --out a.token
expect_out "^a sha256:[0-9a-f]*:[0-9a-f]\{64\}$"
cp out.txt a.line
[ "$(stat -c %a a.token)" = 600 ] || fail "a.token is not mode 0600"
grep -q "^a:[0-9a-f]\{64\}$" a.token || fail "a.token does not hold a:SECRET"
run 1 token --tenant a --out a.token
expect_err "cannot create a.token"
run 2 token --tenant 'bad/name' --out x.token
run 2 token --tenant a
run 0 token --hash a.token
expect_out "^a sha256:"
run 0 token --tenant b --out b.token
cp out.txt b.line
cat a.line b.line >tenants

# --- certificates -------------------------------------------------------------
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
printf 'extendedKeyUsage=clientAuth\n' >client.ext
# shellcheck disable=SC2086
{
  openssl req -x509 $EC -keyout ca.key -out ca.pem -days 2 -subj /CN=ca
  openssl req $EC -keyout server.key -out server.csr -subj /CN=node
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 1 -days 2 \
    -extfile server.ext -out server.pem
  openssl req $EC -keyout client.key -out client.csr -subj /CN=worker
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
    -extfile client.ext -out client.pem
} >openssl.log 2>&1 || fail "openssl could not make the test certificates"

# --- a node with mutual TLS and tenants ---------------------------------------
start_server --no_nvme --dram 64MiB --tenants tenants --tls_cert server.pem --tls_key server.key \
  --tls_client_ca ca.pem
grep -q "gRPC over mutual TLS; tenants authenticated" serve.log ||
  fail "the banner does not say mutual TLS and tenants"
head -c 300000 /dev/urandom >file.bin
TLS=(--server "$SERVER" --tls_ca ca.pem --tls_cert client.pem --tls_key client.key)
run 0 put "${TLS[@]}" --token_file a.token --tenant a file.bin
run 0 get "${TLS[@]}" --token_file a.token --tenant a --out copy.bin file.bin
cmp file.bin copy.bin || fail "the file came back different"
run 1 get "${TLS[@]}" --tenant a --out x.bin file.bin
expect_err "Unauthenticated"
run 1 get "${TLS[@]}" --token_file b.token --tenant a --out x.bin file.bin
expect_err "PermissionDenied"
run 1 get --server "$SERVER" --tls_ca ca.pem --token_file a.token --tenant a --out x.bin file.bin
expect_err "Unavailable"
# The hints name the flags a CLI user sets, not the client library's options.
expect_err "signed by the CA in --tls_ca and name the server (--tls_server_name)"
expect_err "(--tls_cert, --tls_key)"
grep -q "tls_ca_file\|tls_cert_file\|tls_key_file" err.txt && fail "a hint names a library option"
run 1 stats --server "$SERVER" --token_file a.token
expect_err "Unavailable"
expect_err "a node with TLS needs --tls_ca)"
run 1 stats --server "$SERVER" --tls_cert client.pem --tls_key client.key --token_file a.token
expect_err "InvalidArgument: TLS options given without --tls_ca"
run 1 stats --server "$SERVER" --tls_ca ca.pem --tls_cert client.pem --token_file a.token
expect_err "needs both --tls_cert and --tls_key"
run 1 stats --server "$SERVER" --tls_ca missing-ca.pem --token_file a.token
expect_err "TLS CA (--tls_ca) missing-ca.pem"
run 1 stats "${TLS[@]}" --token_file missing.token
expect_err "NotFound: token file missing.token"
run 0 stats "${TLS[@]}" --token_file a.token
expect_out "tenant_namespaces_registered: 1"

# --- token rotation -----------------------------------------------------------
run 0 token --tenant a --out a2.token
hash2="$(cut -d' ' -f2 out.txt)"
printf 'a %s,%s\n' "$(cut -d' ' -f2 a.line)" "$hash2" >tenants
cat b.line >>tenants
reload() {
  local before
  before="$(grep -c "SIGHUP" serve.log || true)"
  kill -HUP "$SERVER_PID"
  for _ in $(seq 100); do
    [ "$(grep -c "SIGHUP" serve.log || true)" -gt "$before" ] && return 0
    sleep 0.1
  done
  fail "no reload logged after SIGHUP"
}
reload
grep -q "SIGHUP: tenants reloaded" serve.log || fail "reload not logged"
run 0 get "${TLS[@]}" --token_file a.token --tenant a --out copy.bin file.bin
run 0 get "${TLS[@]}" --token_file a2.token --tenant a --out copy2.bin file.bin
cmp file.bin copy2.bin || fail "the file came back different with the new token"
printf 'a %s\n' "$hash2" >tenants
cat b.line >>tenants
reload
run 1 get "${TLS[@]}" --token_file a.token --tenant a --out x.bin file.bin
expect_err "Unauthenticated"
echo "a not-a-hash" >tenants
reload
grep -q "tenants not reloaded, the previous table stays" serve.log || fail "bad file not refused"
run 0 get "${TLS[@]}" --token_file a2.token --tenant a --out copy3.bin file.bin

# --- quotas: set by a reload, shown by `strata stats`; a bad line refused -----
printf 'a %s dram=8MiB hint_jobs=64\n' "$hash2" >tenants
cat b.line >>tenants
reload
run 0 stats "${TLS[@]}" --token_file a2.token
expect_out "tenant_dram_quota_bytes: 8388608"
expect_out "tenant_hint_jobs_quota: 64"
expect_out "tenant_dram_bytes: 1048576"  # file.bin: one chunk of the CLI's default 1 MiB
printf 'a %s dram=8MB\n' "$hash2" >tenants
cat b.line >>tenants
reload
grep -q "tenants not reloaded, the previous table stays: INVALID_ARGUMENT: tenants:1: dram=8MB: unknown unit" serve.log ||
  fail "a bad quota line is not refused with the file and line"
run 0 stats "${TLS[@]}" --token_file a2.token
expect_out "tenant_dram_quota_bytes: 8388608"
stop_server

# --- a node does not start with a quota line that does not parse -------------
printf 'a %s nvme=lots\n' "$hash2" >bad_tenants
rc=0
timeout 30 "$STRATA" serve --listen 127.0.0.1:0 --no_nvme --dram 16MiB --tenants bad_tenants \
  >out.txt 2>err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "strata serve with a bad quota line exited $rc, expected 1"
expect_err "bad_tenants:1: nvme=lots: not a byte size"

# --- plaintext on a non-loopback address is logged ----------------------------
start_server --no_nvme --dram 16MiB --listen 0.0.0.0:0
grep -q "is plaintext" serve.log || fail "no plaintext warning for 0.0.0.0"
stop_server
start_server --no_nvme --dram 16MiB
grep -q "is plaintext" serve.log && fail "plaintext warning on loopback"
stop_server
echo PASS
