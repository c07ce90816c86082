#!/usr/bin/env bash
# The README's test command: the whole test suite, including the tests against a real
# OpenAI-compatible LLM server (llama.cpp + SmolLM2-135M, built or reused from
# ~/.cache/ananta by scripts/llm-server.sh; the first run builds it in about 5 minutes).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p ananta-llm   extra arguments go to `cargo test`
#
# Set ANANTA_TEST_OPENAI_URL to use a server you already run instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if [[ -z "${ANANTA_TEST_OPENAI_URL:-}" ]]; then
    url="$(scripts/llm-server.sh start)"
    trap 'scripts/llm-server.sh stop' EXIT
    export ANANTA_TEST_OPENAI_URL="$url"
fi
echo "real LLM server for the tests: $ANANTA_TEST_OPENAI_URL" >&2
# The real-server tests fail instead of skipping when the URL is missing.
export ANANTA_REQUIRE_REAL_LLM=1

cargo test --workspace --all-features "$@"
