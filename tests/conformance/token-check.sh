#!/usr/bin/env bash
# The token half of the conformance suite, without a browser: the suite's own publisher token
# (taken from its spec file and checked to be what its README says: HS256 at+jwt signed with
# the suite's key, iss https://localhost, aud https://localhost/.well-known/mercure, publish and
# subscribe on `*` through authorization_details) must be accepted by `ssehub serve` started as
# tests/conformance/run starts it, for a publish (200) and for a subscribe with `match=` (200,
# the stream opens, and a private update reaches it, which only its subscribe grant allows),
# and the same token with a broken signature must be refused with 401 and
# `WWW-Authenticate: Bearer error="invalid_token"`. Exits 1 if any check fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
suite="${MERCURE_CONFORMANCE:-$root/../shared/mercure-conformance}"
# shellcheck source=hub.sh
. "$here/hub.sh"
for tool in node curl openssl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done

failures=0
pass() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; failures=$((failures + 1)); }
check() { # check DESCRIPTION EXPECTED GOT
  if [ "$2" = "$3" ]; then pass "$1: $3"; else fail "$1: expected $2, got $3"; fi
}

# --- the token, from the suite's spec file ---
token="$(grep -o 'Bearer ey[A-Za-z0-9_.-]*' "$suite/mercure.spec.ts" | head -n1 | cut -d' ' -f2)"
[ -n "$token" ] || { echo "no Bearer token found in $suite/mercure.spec.ts" >&2; exit 2; }
IFS=. read -r head_b64 claims_b64 sig_b64 <<<"$token"
b64url_decode() { node -e "process.stdout.write(Buffer.from(process.argv[1], 'base64url'))" "$1"; }
echo "the suite's token:"
echo "  header  $(b64url_decode "$head_b64")"
echo "  claims  $(b64url_decode "$claims_b64")"
# What the README says it is (checked, not assumed).
node - "$(b64url_decode "$head_b64")" "$(b64url_decode "$claims_b64")" "$CONFORMANCE_ISSUER" "$CONFORMANCE_RESOURCE" <<'JS' || failures=$((failures + 1))
const [header, claims, iss, aud] = process.argv.slice(2).map((s, i) => (i < 2 ? JSON.parse(s) : s));
const assert = require('node:assert/strict');
try {
  assert.equal(header.alg, 'HS256');
  assert.equal(header.typ, 'at+jwt');
  assert.equal(claims.iss, iss);
  assert.equal(claims.aud, aud);
  assert.ok(claims.exp > Date.now() / 1000, 'exp in the future');
  const grants = (action) => claims.authorization_details
    .filter((d) => d.type === 'https://mercure.rocks/authorization-detail' && d.actions.includes(action))
    .flatMap((d) => d.topics.map((t) => t.match));
  assert.deepEqual(grants('publish'), ['*']);
  assert.deepEqual(grants('subscribe'), ['*']);
  console.log('  ok    HS256 at+jwt, iss, aud, exp, publish and subscribe on * as the README says');
} catch (e) {
  console.log(`  FAIL  the token is not what the README says: ${e.message}`);
  process.exit(1);
}
JS
expected_sig="$(printf '%s' "$head_b64.$claims_b64" | openssl dgst -sha256 -hmac "$CONFORMANCE_KEY" -binary | base64 -w0 | tr '+/' '-_' | tr -d '=')"
check "signed with the suite's key ($CONFORMANCE_KEY), signature" "$expected_sig" "$sig_b64"

# The same token with its signature's first character changed (the first byte differs).
first="${sig_b64:0:1}"
if [ "$first" = A ]; then other=B; else other=A; fi
tampered="$head_b64.$claims_b64.$other${sig_b64:1}"

# --- the hub ---
(cd "$root" && cargo build -p ssehub-cli)
tmp="$(mktemp -d)"
sub_pids=()
cleanup() {
  local pid
  for pid in "${sub_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_hub
  rm -rf "$tmp"
}
trap cleanup EXIT
start_hub "$tmp/hub.log"
hub="$HUB_URL/.well-known/mercure"
echo "ssehub serve on $HUB_URL (--issuer $CONFORMANCE_ISSUER --resource-identifier $CONFORMANCE_RESOURCE)"
topic="https://example.net/token-check/$RANDOM$RANDOM"

# publish DESTFILE TOKEN [curl args...]: prints the status, the body goes to DESTFILE, the
# headers to DESTFILE.h.
publish() {
  local out="$1" tok="$2"; shift 2
  curl -sS -o "$out" -D "$out.h" -w '%{http_code}' --max-time 5 \
    -H "Authorization: Bearer $tok" --data-urlencode "topic=$topic" "$@" "$hub" || true
}
# subscribe NAME [curl args...]: a stream on $topic in the background, headers in NAME.h.
subscribe() {
  local name="$1"; shift
  curl -sS -N --max-time 20 -G -D "$tmp/$name.h" -o "$tmp/$name" \
    --data-urlencode "match=$topic" "$@" "$hub" 2>/dev/null &
  sub_pids+=("$!")
}
status_of() { head -n1 "$1" 2>/dev/null | awk '{print $2}'; }
header_of() { grep -i "^$2:" "$1" 2>/dev/null | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ //'; }
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
has_bytes() { [ -s "$1" ]; }
has_text() { grep -q -- "$2" "$1" 2>/dev/null; }

echo "publish with the suite's token:"
code="$(publish "$tmp/pub1" "$token" --data-urlencode 'data=public hello' --data-urlencode 'id=token-check-1')"
check "POST $hub: status" 200 "$code"
check "the id the publisher chose is the answer (CUSTOM_ID)" token-check-1 "$(cat "$tmp/pub1")"

echo "subscribe with the suite's token (match=, Authorization header):"
subscribe authorized -H "Authorization: Bearer $token"
subscribe anonymous
if wait_for 5 has_bytes "$tmp/authorized" && wait_for 5 has_bytes "$tmp/anonymous"; then
  check "GET $hub?match=...: status" 200 "$(status_of "$tmp/authorized.h")"
  check "the stream is text/event-stream" text/event-stream "$(header_of "$tmp/authorized.h" content-type | cut -d';' -f1)"
  pass "the stream opened (first bytes: $(head -c 40 "$tmp/authorized" | tr '\n' ' '))"
  code="$(publish "$tmp/pub2" "$token" --data-urlencode 'data=private hello' --data-urlencode 'private=on')"
  check "a private publish with the suite's token: status" 200 "$code"
  if wait_for 5 has_text "$tmp/authorized" 'data: private hello'; then
    pass "the private update reached the token's subscriber (its subscribe grant on *)"
  else
    fail "the private update did not reach the token's subscriber within 5 s; it got: $(tr '\n' ' ' <"$tmp/authorized")"
  fi
  # The hub delivers in publish order: once the anonymous stream has a public update published
  # after the private one, it has had its chance to (wrongly) get the private one too.
  code="$(publish "$tmp/pub3" "$token" --data-urlencode 'data=public marker')"
  if wait_for 5 has_text "$tmp/anonymous" 'data: public marker'; then
    if has_text "$tmp/anonymous" 'private hello'; then
      fail "an anonymous subscriber got the private update"
    else
      pass "an anonymous subscriber did not get it (it got the public update after it)"
    fi
  else
    fail "the anonymous subscriber got nothing within 5 s (status $(status_of "$tmp/anonymous.h"))"
  fi
else
  fail "no stream opened within 5 s: authorized status $(status_of "$tmp/authorized.h"), anonymous $(status_of "$tmp/anonymous.h"); hub log: $(tr '\n' ' ' <"$tmp/hub.log")"
fi

echo "the 0.x subscribe parameter, on this 1.0 hub:"
code="$(curl -sS -o "$tmp/sub0" -w '%{http_code}' --max-time 5 -G \
  --data-urlencode "topic=$topic" -H "Authorization: Bearer $token" "$hub" || true)"
check "GET ?topic=...: status" 400 "$code"
if has_text "$tmp/sub0" 'match='; then
  pass "the reason names match=: $(head -n1 "$tmp/sub0")"
else
  fail "the 400's reason does not name match=: $(head -n1 "$tmp/sub0")"
fi

echo "the same token with a broken signature:"
code="$(publish "$tmp/pub4" "$tampered" --data-urlencode 'data=forged')"
check "POST: status" 401 "$code"
challenge="$(header_of "$tmp/pub4.h" www-authenticate)"
case "$challenge" in
  'Bearer error="invalid_token"'*) pass "WWW-Authenticate: $challenge" ;;
  *) fail "WWW-Authenticate: expected Bearer error=\"invalid_token\"..., got '$challenge'" ;;
esac
code="$(curl -sS -o "$tmp/sub4" -D "$tmp/sub4.h" -w '%{http_code}' --max-time 5 -G \
  --data-urlencode "match=$topic" -H "Authorization: Bearer $tampered" "$hub" || true)"
check "GET ?match=...: status" 401 "$code"
challenge="$(header_of "$tmp/sub4.h" www-authenticate)"
case "$challenge" in
  'Bearer error="invalid_token"'*) pass "WWW-Authenticate: $challenge" ;;
  *) fail "WWW-Authenticate: expected Bearer error=\"invalid_token\"..., got '$challenge'" ;;
esac

if [ "$failures" -eq 0 ]; then
  echo "token-check: all passed"
else
  echo "token-check: $failures failed"
  exit 1
fi
