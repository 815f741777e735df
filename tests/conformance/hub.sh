# Sourced by tests/conformance/run and token-check.sh: start `ssehub serve` as the official
# conformance suite expects it (its issuer, key and resource identifier), on a free port of
# 127.0.0.1, and stop it again. Needs $root (the repository) set; sets HUB_PID, HUB_PORT, HUB_URL.

# The suite's identity (its README): tokens are HS256 at+jwt from iss https://localhost for aud
# https://localhost/.well-known/mercure. The identifier is pinned, as the hub is reached at
# 127.0.0.1:PORT and would otherwise derive http://127.0.0.1:PORT/.well-known/mercure.
CONFORMANCE_ISSUER='https://localhost'
CONFORMANCE_KEY='!ChangeThisMercureHubJWTSecretKey!'
CONFORMANCE_RESOURCE='https://localhost/.well-known/mercure'

HUB_PID=""

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# start_hub LOGFILE: starts the hub, waits until /healthz answers, fails with its log otherwise.
start_hub() {
  local log="$1" bin="${CARGO_TARGET_DIR:-$root/target}/debug/ssehub"
  HUB_PORT="$(free_port)"
  HUB_URL="http://127.0.0.1:$HUB_PORT"
  # Storage: CONFORMANCE_STORAGE=memory (the default: nothing on disk) or redis (a stream of its
  # own on the Redis at 127.0.0.1:6379, deleted by stop_hub). The console (on by default) is the
  # page at / the suite loads first.
  local storage=(--memory)
  HUB_STREAM=""
  if [ "${CONFORMANCE_STORAGE:-memory}" = redis ]; then
    HUB_STREAM="ssehub-conformance-$$-$RANDOM"
    storage=(--redis "${CONFORMANCE_REDIS:-redis://127.0.0.1:6379}" --redis-stream "$HUB_STREAM")
  fi
  RUST_LOG="${RUST_LOG:-warn}" "$bin" serve \
    --addr "127.0.0.1:$HUB_PORT" "${storage[@]}" \
    --issuer "$CONFORMANCE_ISSUER" --jwt-key "$CONFORMANCE_KEY" \
    --resource-identifier "$CONFORMANCE_RESOURCE" \
    --drain-timeout 1s \
    >"$log" 2>&1 &
  HUB_PID=$!
  local i
  for i in $(seq 1 150); do
    if ! kill -0 "$HUB_PID" 2>/dev/null; then
      wait "$HUB_PID" || true
      HUB_PID=""
      echo "ssehub serve exited at startup; its log ($log):" >&2
      cat "$log" >&2
      return 1
    fi
    if curl -fsS -o /dev/null --max-time 1 "$HUB_URL/healthz" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "ssehub serve did not answer $HUB_URL/healthz within 15 s; its log ($log):" >&2
  cat "$log" >&2
  stop_hub
  return 1
}

# stop_hub: SIGTERM to the hub this script started (by its pid), SIGKILL after 5 s.
stop_hub() {
  [ -n "$HUB_PID" ] || return 0
  kill -TERM "$HUB_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 50); do
    kill -0 "$HUB_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$HUB_PID" 2>/dev/null || true
  wait "$HUB_PID" 2>/dev/null || true
  HUB_PID=""
  # The Redis keys of a redis run: the stream and the keys named after it.
  if [ -n "${HUB_STREAM:-}" ] && command -v redis-cli >/dev/null; then
    redis-cli --scan --pattern "$HUB_STREAM*" | xargs -r redis-cli del >/dev/null || true
    HUB_STREAM=""
  fi
}

# ensure_chromium: Debian's chromium, installed with apt when missing (as tests/browser/run does).
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium (apt)" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
  fi
}
