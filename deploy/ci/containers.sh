#!/usr/bin/env bash
# The containers, end to end, as CI runs them after the test suite (.ci/run) and as anyone can on a
# Debian machine with root (docs/deploy.md):
#   1. a Docker engine (Debian's docker.io, dockerd started by hand), compose v2 as a CLI plugin, and local
#      stand-ins for the official base images, since no registry is reachable here (deploy/ci/engine.sh);
#   2. static checks: hadolint on every Dockerfile, `docker compose config` with the gpu and monitoring
#      profiles (the GPU image cannot be built without its base image);
#   3. the CPU images built from deploy/Dockerfile unchanged; sizes and build times printed;
#   4. `docker compose --profile monitoring up`: the trainer fills the models volume, the server turns
#      healthy, Prometheus scrapes it;
#   5. from the host, the repository's `classify` CLI scores held-out MNIST digits and IMDb reviews against
#      the published port; Prometheus must report the server target up and the requests counted;
#   6. a baked image (deploy/Dockerfile.models) serves the same models with no volume;
#   7. SIGTERM stops the server with exit code 0; `docker compose down -v` removes everything.
# Fails (never skips) when the engine cannot start. Needs: root, apt, PyPI, .venv (make install), the data.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/ci/engine.sh
source deploy/ci/engine.sh

BIN=${BIN:-.venv/bin}
DATA_DIR=${CLASSIFY_DATA_DIR:?set CLASSIFY_DATA_DIR to the folder holding mnist/ and imdb/}
DATA_DIR=$(cd "$DATA_DIR" && pwd)
PROJECT=${CI_COMPOSE_PROJECT:-classify-ci}
WORK=$(mktemp -d)
# The classic builder: Debian's engine has no buildx, and the images need nothing BuildKit-only.
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
started=$SECONDS

step() { printf '\n== containers: %s (at %d s)\n' "$*" $((SECONDS - started)); }
free_port() { "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Free host ports, so a developer's own stack on the default ports is left alone.
export CLASSIFY_DATA_DIR=$DATA_DIR
CLASSIFY_GRPC_PORT=$(free_port) CLASSIFY_METRICS_PORT=$(free_port) CLASSIFY_PROMETHEUS_PORT=$(free_port)
CLASSIFY_HTTP_PORT=$(free_port)
export CLASSIFY_GRPC_PORT CLASSIFY_METRICS_PORT CLASSIFY_PROMETHEUS_PORT CLASSIFY_HTTP_PORT
HTTP=http://127.0.0.1:$CLASSIFY_HTTP_PORT
TARGET=127.0.0.1:$CLASSIFY_GRPC_PORT
compose() { docker compose -p "$PROJECT" "$@"; }

step "engine, compose plugin, stand-in base images"
ensure_engine
ensure_compose
ensure_python_base
PROMETHEUS_IMAGE=$(sed -n 's|^ *image: *\(prom/prometheus:[^ ]*\)$|\1|p' docker-compose.yml)
ensure_prometheus_image "$PROMETHEUS_IMAGE"
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'
docker compose version

step "static checks: hadolint, compose config (default, gpu, monitoring)"
"$BIN/hadolint" deploy/Dockerfile deploy/Dockerfile.gpu deploy/Dockerfile.models deploy/Dockerfile.trainer-gpu
compose config --quiet
compose --profile gpu --profile monitoring config --quiet
[[ $(compose --profile gpu config --services | sort | tr '\n' ' ') == "server server-gpu trainer " ]] ||
  die "the gpu profile should add exactly server-gpu"
compose --profile gpu config --format json | "$BIN/python" -c '
import json, sys
devices = json.load(sys.stdin)["services"]["server-gpu"]["deploy"]["resources"]["reservations"]["devices"]
assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"], devices
'

cleanup() {
  local status=$?
  if ((status != 0)); then
    echo "containers: failed; the stack's last log lines:" >&2
    compose --profile monitoring logs --tail 40 >&2 || true
  fi
  docker rm -f "$PROJECT-baked" >/dev/null 2>&1 || true
  compose --profile monitoring down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

step "build the CPU images from deploy/Dockerfile"
for target in server trainer; do
  begin=$SECONDS
  docker build --quiet -f deploy/Dockerfile --target "$target" -t "classify-$target:cpu" . >/dev/null
  size=$(docker image inspect "classify-$target:cpu" --format '{{.Size}}')
  echo "classify-$target:cpu  $((size / 1000000)) MB  built in $((SECONDS - begin)) s"
done

step "docker compose --profile monitoring up (trainer fills the volume, then the server turns healthy)"
begin=$SECONDS
# --wait: returns once the trainer has completed and the server is healthy, as the README says.
timeout 1200 docker compose -p "$PROJECT" --profile monitoring up -d --wait --no-build
compose ps --all --format '{{.Service}}: {{.Status}}'
[[ $(docker inspect "$(compose ps -q server)" --format '{{.State.Health.Status}}') == healthy ]] ||
  die "the server is not healthy"
[[ $(docker inspect "$(compose ps --all -q trainer)" --format '{{.State.ExitCode}}') == 0 ]] ||
  die "the trainer did not succeed"
echo "stack up and healthy in $((SECONDS - begin)) s"

step "classify from the host against $TARGET"
"$BIN/classify" health --target "$TARGET" --wait 30
"$BIN/classify" models --target "$TARGET"
"$BIN/classify-train" split mnist --data-dir "$DATA_DIR" --out "$WORK" --limit 2000 >/dev/null
"$BIN/classify-train" split imdb --data-dir "$DATA_DIR" --out "$WORK" --limit 1000 >/dev/null
for model in mnist-softmax mnist-mlp mnist-cnn; do
  "$BIN/classify" score --target "$TARGET" --model "$model" \
    --input "$WORK/validation-images-idx3-ubyte.gz" --labels "$WORK/validation-labels-idx1-ubyte.gz" \
    --output "$WORK/$model.csv" --summary-json "$WORK/$model.json" >/dev/null
done
"$BIN/classify" score --target "$TARGET" --model imdb-lstm \
  --input "$WORK/imdb_validation.jsonl.gz" --output "$WORK/imdb-lstm.jsonl" \
  --summary-json "$WORK/imdb-lstm.json" >/dev/null
step "HTTP/JSON from the host against $HTTP (KServe V2 REST, TF Serving REST, native JSON)"
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null || die "curl is missing and could not be installed"; }
curl -fsS "$HTTP/v2/health/ready" -o /dev/null || die "GET /v2/health/ready did not answer 200"
curl -fsS "$HTTP/v1/models/mnist-cnn" | grep -q '"AVAILABLE"' || die "TF Serving REST status of mnist-cnn is not AVAILABLE"
answer=$(curl -fsS -X POST -H 'Content-Type: application/json' \
  -d '{"texts": ["A wonderful, moving film with superb acting."]}' "$HTTP/api/v1/models/imdb-lstm:classify")
echo "native JSON classify: $answer"
grep -q '"label"' <<<"$answer" || die "native JSON classify answered without a label"
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{"images": "x"}' \
  "$HTTP/api/v1/models/mnist-cnn:classify")
[[ $status == 400 ]] || die "a malformed JSON body answered $status, expected 400"

# Quick models (one epoch on a subset) score 0.89-0.95 on digits and ~0.78 on reviews: the floors only
# catch a broken pipeline (wrong preprocessing, mixed-up labels), not a weak model.
"$BIN/python" - "$WORK" <<'EOF'
import json, sys
floors = {"mnist-softmax": 0.8, "mnist-mlp": 0.8, "mnist-cnn": 0.8, "imdb-lstm": 0.65}
for model, floor in floors.items():
    summary = json.load(open(f"{sys.argv[1]}/{model}.json"))
    print(f"{model}: {summary['scored']}/{summary['n']} scored, accuracy {summary['accuracy']:.4f}, "
          f"{summary['per_second']:.0f} rows/s")
    assert summary["failed"] == 0 and summary["accuracy"] >= floor, (model, summary)
EOF

step "Prometheus: the server target is up and counted the requests"
"$BIN/python" - "http://127.0.0.1:$CLASSIFY_PROMETHEUS_PORT" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
base = sys.argv[1]
def get(path):
    with urllib.request.urlopen(base + path, timeout=5) as response:
        return json.load(response)["data"]
deadline, health, counted = time.monotonic() + 90, None, 0.0
while time.monotonic() < deadline:
    try:
        targets = get("/api/v1/targets")["activeTargets"]
        health = next(t["health"] for t in targets if t["labels"]["job"] == "classify-server")
        query = urllib.parse.quote('sum(classify_requests_total{code="OK"})')
        result = get(f"/api/v1/query?query={query}")["result"]
        counted = float(result[0]["value"][1]) if result else 0.0
    except (OSError, StopIteration, KeyError):
        pass
    if health == "up" and counted > 0:
        break
    time.sleep(2)
print(f"classify-server target: {health}; requests counted: {counted:.0f}")
assert health == "up" and counted > 0
EOF

step "a baked image (deploy/Dockerfile.models) serves the same models without a volume"
compose cp server:/models "$WORK/baked-models"
begin=$SECONDS
docker build --quiet -f deploy/Dockerfile.models -t classify-server:cpu-baked "$WORK/baked-models" >/dev/null
echo "classify-server:cpu-baked built in $((SECONDS - begin)) s," \
  "$(($(docker image inspect classify-server:cpu-baked --format '{{.Size}}') / 1000000)) MB"
baked_port=$(free_port)
docker run -d --name "$PROJECT-baked" -p "127.0.0.1:$baked_port:8500" classify-server:cpu-baked >/dev/null
"$BIN/classify" health --target "127.0.0.1:$baked_port" --wait 180
"$BIN/classify" score --target "127.0.0.1:$baked_port" --model mnist-cnn \
  --input "$WORK/validation-images-idx3-ubyte.gz" --labels "$WORK/validation-labels-idx1-ubyte.gz" \
  --output "$WORK/baked.csv" >/dev/null
docker rm -f -v "$PROJECT-baked" >/dev/null

step "SIGTERM: the server drains and exits 0 as PID 1"
server_id=$(compose ps -q server)
compose stop server >/dev/null
[[ $(docker inspect "$server_id" --format '{{.State.ExitCode}}') == 0 ]] || die "the server did not exit 0 on SIGTERM"
# Captured first: with pipefail, `docker logs | grep -q` fails whenever grep exits before docker logs has
# written everything (SIGPIPE), which made this check flaky on a long log.
server_log=$(docker logs "$server_id" 2>&1)
grep -q "shutting down" <<<"$server_log" || die "the server did not log its drain"
# The image's default server answers gRPC on pygrpc-native's compiled front (docs/serving.md, gRPC front).
grep -q "native gRPC front" <<<"$server_log" \
  || die "the server in the image did not serve on the native gRPC front: $(grep -m1 'gRPC front' <<<"$server_log")"

step "docker compose down -v"
compose --profile monitoring down -v --remove-orphans
trap - EXIT
rm -rf "$WORK"
echo "containers: passed in $((SECONDS - started)) s"
