#!/usr/bin/env bash
# bench/run.sh - orderd on each storage/queue backend against a bare CivetWeb
# handler, same machine, same CivetWeb options, in one run. Servers are pinned
# to SERVER_CPU, the clients (wrk, bench/e2e) to CLIENT_CPU.
#
#   bench/run.sh                 (or: make bench)
#   DURATION=30s REPEAT=5 BACKENDS="memory sqlite_full" bench/run.sh
#
# Part 1, wrk: per backend GET /health, GET /api/users/me, GET
# /api/products/:id (both with a real token) and POST /api/orders (plain
# POSTs of one unit of a product with a huge stock; the queue worker runs as
# shipped). Targets run in interleaved rounds and the table shows the median
# of each column and the ratio to bare. After every POST run the script waits
# until the worker has finished every order, so a backlog never leaks into
# the next measurement (that wait is not measured).
# Part 2, bench/e2e: E2E_ORDERS orders posted by E2E_THREADS client threads,
# timed from the first POST until /metrics counts them all COMPLETED/FAILED.
#
# orderd runs with log_level "warn" by default (no access log; LOG_LEVEL=info
# gives the dev config's one line per request, sent to /dev/null). SQLite
# backends keep storage and queue in one file in the temp dir (/tmp), which
# must be on a real disk for "full" durability to mean an fsync per commit.
# Needs: a built tree ($BUILD, default ./build; built here if missing), wrk,
# curl, taskset, cc and libcurl headers (for bench/e2e.c).
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
ORDERD_PORT=${ORDERD_PORT:-3902} # first orderd; the next backends take the next ports
THREADS=${THREADS:-32}   # CivetWeb workers of every server (orderd's default)
REPEAT=${REPEAT:-3}      # rounds; targets interleave, medians are reported
LOG_LEVEL=${LOG_LEVEL:-warn}  # "warn": no access log; "info": one line per request
# Backends: memory, sqlite_full (the shipped default), sqlite_normal, aws
# (DynamoDB Local + fauxqs on loopback, started here by tests/aws/aws-emulators.sh;
# needs java 17, node and the npm registry on first use).
BACKENDS=${BACKENDS:-memory sqlite_full sqlite_normal aws}
WORKERS=${WORKERS:-32}   # queue_worker threads, as in the shipped conf/orderd.conf
AWS_DDB_PORT=${AWS_DDB_PORT:-8611}
AWS_SQS_PORT=${AWS_SQS_PORT:-9611}
SCENARIOS=${SCENARIOS:-health users_me product order}
E2E_ORDERS=${E2E_ORDERS:-2000}
E2E_THREADS=${E2E_THREADS:-8}
E2E_REPEAT=${E2E_REPEAT:-$REPEAT} # 0 skips part 2
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300} # seconds the worker may take to finish a POST run

for tool in wrk curl taskset "${CC:-cc}"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make bench installs wrk)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/orderd-bench-XXXXXX)
PIDS=()
AWS_EMU_STARTED=0
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$AWS_EMU_STARTED" = 1 ]; then
    bash "$ROOT/tests/aws/aws-emulators.sh" stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- build what is missing ----
if [ ! -x "$BUILD/orderd" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD" -j2
fi
# build_tool NAME LIBS...: bench/NAME.c -> $BUILD/bench/NAME when missing or older.
build_tool() {
  local name=$1 out="$BUILD/bench/$1"
  shift
  if [ ! -x "$out" ] || [ "$ROOT/bench/$name.c" -nt "$out" ]; then
    mkdir -p "$BUILD/bench"
    ${CC:-cc} -std=c17 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
      -Wmissing-prototypes -Wformat=2 -Wvla -pthread "$ROOT/bench/$name.c" "$@" -o "$out"
  fi
}
build_tool bare_civetweb -lcivetweb
build_tool e2e -lcurl
BARE="$BUILD/bench/bare_civetweb"
E2E="$BUILD/bench/e2e"

# The aws backend runs against the emulators on loopback (stopped by PID on
# exit); downloads are cached in the build tree like the tests' fixture.
case " $BACKENDS " in
  *" aws "*)
    export AWS_EMU_CACHE="$BUILD/aws-emu" AWS_EMU_RUN="$WORK/aws-emu-run" \
           AWS_EMU_DDB_PORT=$AWS_DDB_PORT AWS_EMU_SQS_PORT=$AWS_SQS_PORT
    bash "$ROOT/tests/aws/aws-emulators.sh" start
    AWS_EMU_STARTED=1
    export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 \
           AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$AWS_DDB_PORT" \
           AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$AWS_SQS_PORT" ;;
esac

# wait_http URL: poll until it answers 200, for at most 10 s.
wait_http() {
  local deadline=$((SECONDS + 10))
  until curl -sf -o /dev/null "$1"; do
    [ $SECONDS -lt $deadline ] || { echo "bench: $1 did not come up" >&2; return 1; }
    sleep 0.1
  done
}

# write_config BACKEND PORT FILE: the dev config's shape with the backend's
# storage/queue groups, the bench's log level and worker count.
write_config() {
  local backend=$1 port=$2 file=$3 stores
  case "$backend" in
    memory)
      stores='storage: { backend = "memory"; };
queue: { backend = "memory"; memory_max_messages = 10000000; };' ;;
    sqlite_full|sqlite_normal)
      local db="$WORK/$backend.db" durability=${backend#sqlite_}
      stores="storage: { backend = \"sqlite\"; path = \"$db\"; durability = \"$durability\"; };
queue: { backend = \"sqlite\"; path = \"$db\"; durability = \"$durability\"; };" ;;
    aws)
      local prefix="bench$$_"
      stores="storage: { backend = \"dynamodb\"; table_prefix = \"$prefix\"; create_missing = true; };
queue: { backend = \"sqs\"; queue_prefix = \"bench$$-\"; create_missing = true; };" ;;
    *) echo "bench: unknown backend \"$backend\" (known: memory sqlite_full sqlite_normal aws)" >&2
       return 1 ;;
  esac
  cat >"$file" <<EOF
# orderd for bench/run.sh: dev-config shape, backend $backend.
server: {
  listen = "127.0.0.1:$port";
  threads = $THREADS;
  log_level = "$LOG_LEVEL";
  development = true;
};
modules: {
  directory = "$BUILD/modules";
  load = ["auth", "users", "products", "orders", "queue_worker",
          "step_validate", "step_reserve_stock", "step_complete"];
};
$stores
auth: { generate_dev_secret = true; };
users: { admin_email = "admin@example.com"; admin_password = "orderd-admin-dev"; };
orders: { pipeline = ["validate", "reserve_stock", "complete"]; };
queue_worker: { threads = $WORKERS; };
EOF
}

# start_orderd BACKEND PORT: starts it, logs in, creates the bench product and
# the POST script; sets URL_<backend>, TOKEN_<backend>, PRODUCT_<backend>.
start_orderd() {
  local backend=$1 port=$2 conf="$WORK/$1.conf" url="http://127.0.0.1:$2" log=/dev/null
  write_config "$backend" "$port" "$conf"
  local check
  if ! check=$("$BUILD/orderd" --check-config -c "$conf" 2>&1); then
    echo "$check" >&2
    return 1
  fi
  # At info level the access log is hundreds of MB per run.
  case "$LOG_LEVEL" in warn|error) log="$WORK/$backend.log" ;; esac
  taskset -c "$SERVER_CPU" "$BUILD/orderd" -c "$conf" >"$log" 2>&1 &
  PIDS+=($!)
  wait_http "$url/health"
  local token product
  token=$(curl -sf -X POST "$url/api/login" -H 'Content-Type: application/json' \
            -d '{"email":"admin@example.com","password":"orderd-admin-dev"}' |
          sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { echo "bench: $backend: login failed" >&2; return 1; }
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "$url/api/users/me" ||
    { echo "bench: $backend: GET /api/users/me with the token failed" >&2; return 1; }
  product=$(curl -sf -X POST "$url/api/products" -H "Authorization: Bearer $token" \
              -H 'Content-Type: application/json' \
              -d '{"name":"bench widget","description":"bench/run.sh","price":1.00,"stock":1000000000}' |
            sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  [ -n "$product" ] || { echo "bench: $backend: creating the product failed" >&2; return 1; }
  cat >"$WORK/$backend.post.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"items":["$product"]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
EOF
  printf -v "URL_$backend" '%s' "$url"
  printf -v "TOKEN_$backend" '%s' "$token"
  printf -v "PRODUCT_$backend" '%s' "$product"
}

# order_counts URL: prints "pending completed failed" from /metrics.
order_counts() {
  curl -sf "$1/metrics" | awk '
    /^orderd_orders_status_changes_total\{status="PENDING"\} /   { p = $2 }
    /^orderd_orders_status_changes_total\{status="COMPLETED"\} / { c = $2 }
    /^orderd_orders_status_changes_total\{status="FAILED"\} /    { f = $2 }
    END { printf "%d %d %d\n", p, c, f }'
}

# drain URL: wait until every accepted order is COMPLETED or FAILED.
drain() {
  local deadline=$((SECONDS + DRAIN_TIMEOUT)) p c f
  while read -r p c f < <(order_counts "$1"); [ $((c + f)) -lt "$p" ]; do
    [ $SECONDS -lt $deadline ] ||
      { echo "bench: $1: $((p - c - f)) orders unfinished after ${DRAIN_TIMEOUT}s" >&2; return 1; }
    sleep 0.2
  done
}

# run NAME URL [wrk args...]: prints "NAME req/s p50_ms p99_ms non2xx socket_errors|-".
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

# scenario BACKEND SCENARIO: one wrk run of one scenario against one backend.
scenario() {
  local b=$1 s=$2 url token product
  url=URL_$b token=TOKEN_$b product=PRODUCT_$b
  url=${!url} token=${!token} product=${!product}
  case "$s" in
    health)   run "${b}_$s" "$url/health" ;;
    users_me) run "${b}_$s" "$url/api/users/me" -H "Authorization: Bearer $token" ;;
    product)  run "${b}_$s" "$url/api/products/$product" -H "Authorization: Bearer $token" ;;
    order)    run "${b}_$s" "$url/api/orders" -s "$WORK/$b.post.lua"
              drain "$url" ;;
    *) echo "bench: unknown scenario \"$s\" (known: health users_me product order)" >&2
       return 1 ;;
  esac
}

# ---- servers ----
port=$ORDERD_PORT
for b in $BACKENDS; do
  start_orderd "$b" "$port"
  port=$((port + 1))
done
first=${BACKENDS%% *}
url=URL_$first
curl -sf "${!url}/health" -o "$WORK/health.json"
# Bare CivetWeb, answering with the first orderd's /health bytes.
taskset -c "$SERVER_CPU" "$BARE" "$BARE_PORT" "$WORK/health.json" "$THREADS" 2>"$WORK/bare.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$BARE_PORT/health"

echo "bench: $(date -u '+%F %T UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench: wrk $DURATION x $REPEAT rounds, $CONNECTIONS connections, wrk -t$WRK_THREADS on cpu" \
     "$CLIENT_CPU, servers on cpu $SERVER_CPU ($THREADS workers), log_level $LOG_LEVEL," \
     "backends: $BACKENDS"

# ---- part 1: wrk, interleaved rounds ----
# Each round runs, per scenario, bare and then that scenario on every backend,
# so each ratio pairs runs made within a minute of each other: on a shared
# machine the load drifts more between rounds than within one block.
targets="bare"
for b in $BACKENDS; do for s in $SCENARIOS; do targets="$targets ${b}_$s"; done; done
results=$(
  for round in $(seq "$REPEAT"); do
    for s in $SCENARIOS; do
      run bare "http://127.0.0.1:$BARE_PORT/health"
      for b in $BACKENDS; do scenario "$b" "$s"; done
    done
    echo "bench: round $round done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  done
)
echo "all runs in order (target req/s p50_ms p99_ms non-2xx socket-errors):"
echo "$results" | sed 's/^/  /'
# Medians per target; "/bare" is the median of the per-block ratios to the bare
# run just before, "/memory" the same against the memory run of that block.
echo "$results" | awk -v rounds="$REPEAT" -v targets="$targets" '
  function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { r[$1] = r[$1] " " $2; l50[$1] = l50[$1] " " $3; l99[$1] = l99[$1] " " $4; bad[$1] += $5 }
  $1 == "bare" { bare = $2; next }
  bare > 0 { vb[$1] = vb[$1] " " $2 / bare }
  $1 ~ /^memory_/ { mem[substr($1, 8)] = $2 }
  $1 ~ /^sqlite_/ { s = $1; sub(/^sqlite_[a-z]+_/, "", s); if (mem[s] > 0) vm[$1] = vm[$1] " " $2 / mem[s] }
  END {
    printf "median of %d round(s):\n%-24s %9s %9s %9s %8s %7s %8s\n", rounds, "target", "req/s",
           "p50 ms", "p99 ms", "non-2xx", "/bare", "/memory"
    n = split(targets, order, " ")
    for (i = 1; i <= n; i++) {
      t = order[i]
      ratio_b[t] = (t == "bare" ? 1 : median(vb[t]))
      ratio_m[t] = (t in vm ? median(vm[t]) : 0)
      printf "%-24s %9d %9.3f %9.3f %8d %7.2f %8s\n", t, median(r[t]), median(l50[t]),
             median(l99[t]), bad[t], ratio_b[t], (t in vm ? sprintf("%.2f", ratio_m[t]) : "-")
    }
    for (i = 1; i <= n; i++) {
      t = order[i]
      if (t !~ /_(users_me|product)$/) continue
      printf "goal: authenticated read >= 0.70 x bare    %-24s %.2f %s\n", t, ratio_b[t],
             (ratio_b[t] >= 0.7 ? "met" : "NOT met")
      if (t in vm)
        printf "goal: SQLite read within 2x of memory     %-24s %.2f %s\n", t, ratio_m[t],
               (ratio_m[t] >= 0.5 ? "met" : "NOT met")
    }
  }'
if echo "$results" | awk '$5 > 0 { bad = 1 } END { exit !bad }'; then
  echo "bench: WARNING: some responses were not 2xx (see counts above)" >&2
fi

# ---- part 2: end to end ----
if [ "$E2E_REPEAT" -lt 1 ]; then
  echo "bench: finished $(date -u '+%T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
echo "end to end: $E2E_ORDERS orders from $E2E_THREADS client threads on cpu $CLIENT_CPU," \
     "$E2E_REPEAT round(s), load average $(cut -d' ' -f1-3 /proc/loadavg)"
e2e=$(
  for round in $(seq "$E2E_REPEAT"); do
    for b in $BACKENDS; do
      url=URL_$b token=TOKEN_$b product=PRODUCT_$b
      echo "$b $(taskset -c "$CLIENT_CPU" "$E2E" "${!url}" "${!token}" "${!product}" \
                   "$E2E_ORDERS" "$E2E_THREADS" "$DRAIN_TIMEOUT")"
    done
  done
)
echo "all rounds (backend orders accepted non-201 post_s e2e_s orders/s post_p50_ms post_p99_ms completed failed):"
echo "$e2e" | sed 's/^/  /'
echo "$e2e" | awk -v backends="$BACKENDS" '
  function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { ops[$1] = ops[$1] " " $7; e2e[$1] = e2e[$1] " " $6; p50[$1] = p50[$1] " " $8
    p99[$1] = p99[$1] " " $9; bad[$1] += $4; failed[$1] += $11 }
  END {
    printf "median:\n%-16s %10s %8s %12s %12s %8s %7s\n", "backend", "orders/s", "e2e s",
           "POST p50 ms", "POST p99 ms", "non-201", "FAILED"
    n = split(backends, order, " ")
    for (i = 1; i <= n; i++) {
      b = order[i]
      o[b] = median(ops[b])
      printf "%-16s %10d %8.3f %12.3f %12.3f %8d %7d\n", b, o[b], median(e2e[b]), median(p50[b]),
             median(p99[b]), bad[b], failed[b]
    }
    for (i = 1; i <= n; i++)
      if ((b = order[i]) ~ /^sqlite/)
        printf "goal: >= 1000 orders/s end to end on SQLite  %-14s %d %s\n", b, o[b],
               (o[b] >= 1000 ? "met" : "NOT met")
  }'
echo "bench: finished $(date -u '+%T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
