#!/usr/bin/env bash
# The README's main job (`make demo`): train quick models if the repository has none, start the server,
# score held-out MNIST digits and IMDb reviews with the `classify` CLI, print what happened, stop the server.
set -euo pipefail

BIN=${BIN:-.venv/bin}
# Unset or empty: classify-train uses its user cache and downloads the data into it (docs/training.md).
DATA_DIR=${CLASSIFY_DATA_DIR:-}
DATA_ARGS=()
if [[ -n "$DATA_DIR" ]]; then DATA_ARGS=(--data-dir "$DATA_DIR"); fi
REPOSITORY=${MODEL_REPOSITORY:-models}
WORK=${DEMO_DIR:-.demo}
PORT=${PORT:-$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
TARGET=127.0.0.1:$PORT
mkdir -p "$WORK" "$REPOSITORY"

step() { printf '\n== %s\n' "$*"; }

step "Models in $REPOSITORY (quick ones are trained only where a model has no version yet)"
"$BIN/classify-train" all --quick --if-empty "${DATA_ARGS[@]}" --export "$REPOSITORY"

step "Held-out samples: the validation split, which training never sees"
"$BIN/classify-train" split mnist "${DATA_ARGS[@]}" --out "$WORK" --limit 2000
"$BIN/classify-train" split imdb "${DATA_ARGS[@]}" --out "$WORK" --limit 1000

step "Starting classify-server on $TARGET (log: $WORK/server.log)"
"$BIN/classify-server" --model-repository "$REPOSITORY" --port "$PORT" --metrics-port 0 --http-port 0 >"$WORK/server.log" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
}
trap stop_server EXIT
for _ in $(seq 1 600); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "classify-server exited during start-up:" >&2
    tail -n 20 "$WORK/server.log" >&2
    exit 1
  fi
  "$BIN/classify" health --target "$TARGET" >/dev/null 2>&1 && break
  sleep 0.2
done
"$BIN/classify" health --target "$TARGET" --wait 5
"$BIN/classify" models --target "$TARGET"

for model in mnist-softmax mnist-mlp mnist-cnn; do
  step "classify score: $model on 2,000 held-out MNIST digits"
  "$BIN/classify" score --target "$TARGET" --model "$model" \
    --input "$WORK/validation-images-idx3-ubyte.gz" --labels "$WORK/validation-labels-idx1-ubyte.gz" \
    --output "$WORK/$model.csv" --summary-json "$WORK/$model.summary.json"
done

step "classify score: imdb-lstm on 1,000 held-out raw IMDb reviews"
"$BIN/classify" score --target "$TARGET" --model imdb-lstm \
  --input "$WORK/imdb_validation.jsonl.gz" --output "$WORK/imdb-lstm.jsonl" \
  --summary-json "$WORK/imdb-lstm.summary.json"

step "Stopping the server (SIGTERM: accepted requests finish first)"
stop_server
trap - EXIT
echo "Predictions are in $WORK/ (one row per input, in input order); the models stay in $REPOSITORY/."
