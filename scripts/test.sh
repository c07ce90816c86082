#!/usr/bin/env bash
# The README's test command: the whole test suite, including the tests against a real
# OpenAI-compatible LLM server (llama.cpp + SmolLM2-135M, built or reused from
# ~/.cache/ananta by scripts/llm-server.sh; the first run builds it in about 5 minutes).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p ananta-llm   extra arguments go to `cargo test`
#
# Set ANANTA_TEST_OPENAI_URL to use a server you already run instead of starting one, and
# ANANTA_PG_URL to point the PostgreSQL tests at a server of your choice (default: the local
# cluster on 127.0.0.1:5432, started here when it is down; each test makes and drops its own
# database).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if [[ -z "${ANANTA_TEST_OPENAI_URL:-}" ]]; then
    url="$(scripts/llm-server.sh start)"
    trap 'scripts/llm-server.sh stop "$url"' EXIT
    export ANANTA_TEST_OPENAI_URL="$url"
fi
echo "real LLM server for the tests: $ANANTA_TEST_OPENAI_URL" >&2
# The real-server tests fail instead of skipping when the URL is missing.
export ANANTA_REQUIRE_REAL_LLM=1

if [[ -z "${ANANTA_PG_URL:-}" ]]; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        if command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]]; then
            echo "starting the local PostgreSQL cluster" >&2
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
        fi
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
            sleep 1
        done
    fi
    export ANANTA_PG_URL="postgres://postgres@127.0.0.1:5432/test"
fi
echo "PostgreSQL for the tests: …@${ANANTA_PG_URL#*@}" >&2
# The PostgreSQL tests fail instead of skipping when the URL is missing.
export ANANTA_REQUIRE_PG=1
# The sandbox tests (Landlock, seccomp, cgroups; root here) must run, not report NOT RUN.
export ANANTA_REQUIRE_SANDBOX=1

cargo test --workspace --all-features "$@"
