#!/bin/sh
# Run the whole test suite: a private PostgreSQL for the store tests on both backends, then pytest.
set -eu
cd "$(dirname "$0")/.."
. ./scripts/postgres.sh
pg_start || echo "PostgreSQL is not available: its store tests will be skipped" >&2
trap pg_stop EXIT
trap "exit 130" INT TERM
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
exit $rc
