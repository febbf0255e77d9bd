#!/bin/sh
# Run the whole test suite: a private PostgreSQL for the store tests on both backends, then pytest.
# With no arguments, the fast CPU-bound tests (tests/unit, tests/api) and then the Swarm tests run in a
# second lane beside the slow ones that mostly wait on the engine and the browser (tests/integration,
# tests/e2e): on two cores that takes minutes off the run. Arguments run one pytest with them, as before.
set -eu
cd "$(dirname "$0")/.."
. ./scripts/postgres.sh
pg_start || echo "PostgreSQL is not available: its store tests will be skipped" >&2
fast_log=$(mktemp)
trap 'pg_stop; rm -f "$fast_log"' EXIT
trap "exit 130" INT TERM
set +e
if [ $# -gt 0 ]; then
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
  rc=$?
else
  # the Swarm tests (tests/integration/test_swarm_*.py, tests/e2e/test_swarm_*.py) wait on their own test cluster of dockerd nodes,
  # not on the host engine: they run in the second lane, after the fast tests
  ( .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 tests/unit tests/api; first=$?
    .venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 tests/integration/test_swarm_*.py \
      tests/e2e/test_swarm_*.py || exit 1
    exit $first
  ) > "$fast_log" 2>&1 &
  fast=$!
  .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 --ignore-glob='tests/integration/test_swarm_*' \
    --ignore-glob='tests/e2e/test_swarm_*' tests/integration tests/e2e
  rc=$?
  wait $fast
  fast_rc=$?
  echo "--- tests/unit and tests/api, then the Swarm tests (run beside the above) ---"
  cat "$fast_log"
  [ $rc -ne 0 ] || rc=$fast_rc
fi
set -e
exit $rc
