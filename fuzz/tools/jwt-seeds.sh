#!/usr/bin/env bash
# Writes the jwt target's seed tokens (fuzz/corpus/jwt/token-*) with OpenSSL, signed by the
# target's two TEST-ONLY keys: the Ed25519 key whose seed is ED25519_SEED in
# fuzz_targets/jwt.rs, and fuzz/keys/rs256-TEST-ONLY.pk8. Tokens made by another
# implementation that verify in Gatehouse are the starting point the fuzzer mutates: a
# mutated token must never verify.
#
# Each file is the target's input: one control byte (0 = "take the rest as a token"), then
# the token. Run from anywhere: fuzz/tools/jwt-seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=corpus/jwt
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Must match ED25519_SEED, ED25519_KID and RS256_KID in fuzz_targets/jwt.rs.
ed_seed=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
ed_kid=7b3f1c2e-0d4a-4e5b-8c6d-9e0f1a2b3c4d
rs_kid=4c3b2a19-0807-4605-a4b3-c2d1e0f9a8b7

# PKCS#8 v1 for Ed25519 is a fixed DER prefix and the 32-byte seed (RFC 8410).
printf '302e020100300506032b657004220420%s' "$ed_seed" | xxd -r -p > "$tmp/ed.der"
openssl pkey -inform DER -in "$tmp/ed.der" -out "$tmp/ed.pem"
openssl pkey -inform DER -in keys/rs256-TEST-ONLY.pk8 -out "$tmp/rs.pem"

b64url() { basenc --base64url -w0 | tr -d '='; }

# token NAME ALG KID CLAIMS
token() {
  local name=$1 alg=$2 kid=$3 claims=$4 input sig
  input="$(printf '{"typ":"JWT","alg":"%s","kid":"%s"}' "$alg" "$kid" | b64url).$(printf '%s' "$claims" | b64url)"
  case $alg in
    EdDSA) printf '%s' "$input" > "$tmp/in"
           sig=$(openssl pkeyutl -sign -rawin -inkey "$tmp/ed.pem" -in "$tmp/in" | b64url) ;;
    RS256) sig=$(printf '%s' "$input" | openssl dgst -sha256 -sign "$tmp/rs.pem" | b64url) ;;
  esac
  { printf '\x00'; printf '%s.%s' "$input" "$sig"; } > "$out/token-$name"
}

claims='{"iss":"https://issuer.example/demo","sub":"client-1","aud":"http://myhttpbin.dev","client_id":"client-1","jti":"0b9e4f3a-6c1d-4e2f-9a8b-7c6d5e4f3a2b","iat":1700000000,"nbf":1700000000,"exp":4102444800,"scope":"my-scope","test-claim":"test"}'
token eddsa EdDSA "$ed_kid" "$claims"
token rs256 RS256 "$rs_kid" "$claims"
token eddsa-small EdDSA "$ed_kid" '{"sub":"x"}'
token rs256-unicode RS256 "$rs_kid" '{"sub":"caf\u00e9","nested":{"a":[1,2.5,null,true]}}'
# An RS256 signature under an EdDSA header and key id: must not verify.
sig=$(cut -d. -f3 < <(tail -c +2 "$out/token-rs256"))
{ printf '\x00'; printf '%s.%s' "$(tail -c +2 "$out/token-eddsa" | cut -d. -f1-2)" "$sig"; } > "$out/token-mismatched"
ls -l "$out"
