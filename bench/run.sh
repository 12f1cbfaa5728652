#!/usr/bin/env bash
# bench/run.sh - orderd against a bare CivetWeb handler, same machine, same
# CivetWeb options. Servers are pinned to SERVER_CPU, wrk to CLIENT_CPU.
#
#   bench/run.sh                 (or: make bench)
#   DURATION=30s CONNECTIONS=32 REPEAT=5 bench/run.sh
#
# On a shared machine single runs are noisy: the three targets run in
# interleaved rounds and the table shows the median of each column.
# Needs: a built tree ($BUILD, default ./build; built here if missing), wrk,
# curl, taskset. Prints req/s and p50/p99 per target and orderd/bare ratios.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BARE_PORT=${BARE_PORT:-3901}
ORDERD_PORT=${ORDERD_PORT:-3902}
THREADS=${THREADS:-32}   # CivetWeb workers of both servers (orderd's default)
REPEAT=${REPEAT:-3}      # rounds; targets interleave, medians are reported
LOG_LEVEL=${LOG_LEVEL:-info}  # the dev config's; info writes one access line per request

for tool in wrk curl taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make bench installs wrk)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/orderd-bench-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- build what is missing ----
if [ ! -x "$BUILD/orderd" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD" -j2
fi
BARE="$BUILD/bench/bare_civetweb"
if [ ! -x "$BARE" ] || [ "$ROOT/bench/bare_civetweb.c" -nt "$BARE" ]; then
  mkdir -p "$BUILD/bench"
  ${CC:-cc} -std=c17 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
    -Wmissing-prototypes -Wformat=2 -Wvla -pthread "$ROOT/bench/bare_civetweb.c" -lcivetweb -o "$BARE"
fi

# wait_http URL: poll until it answers 200, for at most 10 s.
wait_http() {
  local deadline=$((SECONDS + 10))
  until curl -sf -o /dev/null "$1"; do
    [ $SECONDS -lt $deadline ] || { echo "bench: $1 did not come up" >&2; return 1; }
    sleep 0.1
  done
}

# ---- orderd (dev config: memory backends, dev admin) ----
# Config key overrides: PORT replaces the port of server.listen.
cp "$BUILD/orderd-dev.conf" "$WORK/orderd.conf"
sed -i "s/^\(\s*log_level\s*=\s*\)\"[a-z]*\"/\1\"$LOG_LEVEL\"/" "$WORK/orderd.conf"
# At info level the access log is hundreds of MB per run: check the config
# first (errors go to the terminal), then log to /dev/null.
if ! check=$("$BUILD/orderd" --check-config -c "$WORK/orderd.conf" 2>&1); then
  echo "$check" >&2
  exit 1
fi
PORT=$ORDERD_PORT taskset -c "$SERVER_CPU" "$BUILD/orderd" -c "$WORK/orderd.conf" 2>/dev/null &
PIDS+=($!)
ORDERD="http://127.0.0.1:$ORDERD_PORT"
wait_http "$ORDERD/health"

curl -sf "$ORDERD/health" -o "$WORK/health.json"
TOKEN=$(curl -sf -X POST "$ORDERD/api/login" -H 'Content-Type: application/json' \
          -d '{"email":"admin@example.com","password":"orderd-admin-dev"}' |
        sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "bench: login failed" >&2; exit 1; }
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$ORDERD/api/users/me" ||
  { echo "bench: GET /api/users/me with the token failed" >&2; exit 1; }

# ---- bare CivetWeb, answering with orderd's /health bytes ----
taskset -c "$SERVER_CPU" "$BARE" "$BARE_PORT" "$WORK/health.json" "$THREADS" 2>"$WORK/bare.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$BARE_PORT/health"

# run NAME URL [wrk args...]: prints "NAME req/s p50_ms p99_ms non2xx".
run() {
  local name=$1 url=$2
  shift 2
  local out="$WORK/$name.wrk"
  taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$out"
  awk -v name="$name" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000;
      if (v ~ /ms$/) return v + 0;
      if (v ~ /s$/)  return v * 1000;
      return v;
    }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { sub(/^ +Socket errors: +/, ""); gsub(/ /, ""); errs = $0 }
    END { printf "%s %.0f %.3f %.3f %d %s\n", name, rps, p50, p99, bad, (errs ? errs : "-") }
  ' "$out"
}

# "run" prints: name req/s p50_ms p99_ms non2xx socket_errors|-
echo "bench: $DURATION x $REPEAT, $CONNECTIONS connections, wrk -t$WRK_THREADS on cpu $CLIENT_CPU," \
     "servers on cpu $SERVER_CPU ($THREADS workers), orderd log_level $LOG_LEVEL"
results=$(
  for round in $(seq "$REPEAT"); do
    run bare "http://127.0.0.1:$BARE_PORT/health"
    run orderd_health "$ORDERD/health"
    run orderd_users_me "$ORDERD/api/users/me" -H "Authorization: Bearer $TOKEN"
  done
)
echo "all rounds (target req/s p50_ms p99_ms non-2xx socket-errors):"
echo "$results" | sed 's/^/  /'
echo "$results" | awk -v rounds="$REPEAT" '
  function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { r[$1] = r[$1] " " $2; l50[$1] = l50[$1] " " $3; l99[$1] = l99[$1] " " $4; bad[$1] += $5 }
  END {
    split("bare orderd_health orderd_users_me", order, " ")
    printf "median of %d round(s):\n%-18s %10s %10s %10s %8s\n", rounds, "target", "req/s", "p50 ms", "p99 ms", "non-2xx"
    for (i = 1; i <= 3; i++) {
      t = order[i]
      rps[t] = median(r[t]); p50[t] = median(l50[t]); p99[t] = median(l99[t])
      printf "%-18s %10d %10.3f %10.3f %8d\n", t, rps[t], p50[t], p99[t], bad[t]
    }
    split("orderd_health orderd_users_me", order, " ")
    for (i = 1; i <= 2; i++) if ((t = order[i]) in rps && rps["bare"] > 0)
      printf "ratio %-12s req/s %.2f   p50 %.2f   p99 %.2f   (orderd / bare)\n", t,
             rps[t] / rps["bare"], (p50["bare"] ? p50[t] / p50["bare"] : 0), (p99["bare"] ? p99[t] / p99["bare"] : 0)
  }'
if echo "$results" | awk '$5 > 0 { bad = 1 } END { exit !bad }'; then
  echo "bench: WARNING: some responses were not 2xx (see counts above)" >&2
fi
