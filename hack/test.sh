#!/usr/bin/env bash
# `make test`: lint, then every test tier in one pytest session against the real local cluster.
# The cluster is started if it is not running and, if this script started it, stopped at the end,
# pass or fail, so no daemon outlives the run (CI waits on its output otherwise).
# The 30 slowest tests are listed at the end: the CI budget (90 min) is spent there.
set -uo pipefail
cd "$(dirname "$0")/.."
LOCALCLUSTER=(env PYTHONPATH=hack .venv/bin/python -m localcluster)

started_here=0
if ! "${LOCALCLUSTER[@]}" status 2>/dev/null | grep -q '"healthy": true'; then
  started_here=1
fi
cleanup() {
  if ((started_here)); then "${LOCALCLUSTER[@]}" down || true; fi
}
trap cleanup EXIT

echo "== lint (ruff, mypy)"
make --no-print-directory lint || exit 1

echo "== local cluster"
"${LOCALCLUSTER[@]}" up --kwok-nodes "${KWOK_NODES:-3}" || exit 1

echo "== tests: unit, agent, cluster, integration, e2e, teardown"
.venv/bin/pytest tests --durations=30 "$@"
