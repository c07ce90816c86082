#!/usr/bin/env bash
# The agent suite against the local model (llama.cpp + SmolLM2-135M, started here unless
# ANANTA_LLM_URL names a server): every task of examples/src/suite/tasks.rs in the text,
# structured and tools protocols, then the report table (also written to
# target/agent-suite.md). Exits non-zero when a run crashed, hung, or said "done" while its
# check fails; how many tasks are solved is reported, not judged.
#
#   scripts/agent-suite.sh                       the full suite (21 tasks x 3 protocols)
#   scripts/agent-suite.sh --tasks 6 --max-steps 6   the CI subset
#
# Other options go to the example (see examples/agent_suite.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if [[ -z "${ANANTA_LLM_URL:-}" ]]; then
    url="$(scripts/llm-server.sh start)"
    trap 'scripts/llm-server.sh stop "$url"' EXIT
    export ANANTA_LLM_URL="$url"
fi
mkdir -p target
cargo run -q -p ananta-examples --example agent_suite -- "$@" | tee target/agent-suite.log
awk '/^\| model/{on=1} on' target/agent-suite.log > target/agent-suite.md
