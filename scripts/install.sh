#!/bin/sh
# Install what Dockyard needs on Debian: system packages (when root and missing) and a .venv.
# Safe to run again: it installs only what is missing.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WANT_TEST=${WANT_TEST:-0}

need_pkgs=""
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd || need_pkgs="$need_pkgs docker.io"
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || \
  dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs="$need_pkgs busybox-static"
have iptables || need_pkgs="$need_pkgs iptables"
have npm || need_pkgs="$need_pkgs npm"            # the dashboard's pinned front-end libraries
have docker-registry || need_pkgs="$need_pkgs docker-registry"  # the image registry Dockyard runs (--registry-listen)
# Debian's python3 makes venvs only with python3-venv (ensurepip); try once, before the first venv
if [ ! -x .venv/bin/python ]; then
  probe=$(mktemp -d)
  $PY -m venv "$probe/v" >/dev/null 2>&1 || need_pkgs="$need_pkgs python3-venv"
  rm -rf "$probe"
fi
if [ "$WANT_TEST" = 1 ]; then
  have docker-compose || need_pkgs="$need_pkgs docker-compose"
  have skopeo || need_pkgs="$need_pkgs skopeo"        # a second registry client in tests/integration/test_registry_auth.py
  have ip || need_pkgs="$need_pkgs iproute2"          # private engines in network namespaces
  have nsenter || need_pkgs="$need_pkgs util-linux"
  have chromium || need_pkgs="$need_pkgs chromium"    # dashboard tests drive Debian's Chromium
  have prometheus || need_pkgs="$need_pkgs prometheus"  # scrapes /metrics in tests/integration/test_prometheus.py
  have rsyslogd || [ -x /usr/sbin/rsyslogd ] || need_pkgs="$need_pkgs rsyslog"  # receives log drains in tests/integration/test_log_drains.py
  fc-list 2>/dev/null | grep -qi "cjk" || need_pkgs="$need_pkgs fonts-noto-cjk"  # Chinese pages in screenshots
  [ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
    need_pkgs="$need_pkgs postgresql"
fi
if [ -n "$need_pkgs" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages:$need_pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null
  else
    echo "missing Debian packages:$need_pkgs (run as root, or install them yourself)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  $PY -m venv .venv
fi
stamp=.venv/.dockyard-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || { [ "$WANT_TEST" = 1 ] && ! grep -q test "$stamp"; }; then
  .venv/bin/pip install -q --disable-pip-version-check -U pip >/dev/null 2>&1 || true
  if [ "$WANT_TEST" = 1 ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    echo test > "$stamp"
  else
    .venv/bin/pip install -q --disable-pip-version-check -e .
    echo run > "$stamp"
  fi
fi

# the dashboard's front-end libraries, exactly as package-lock.json pins them (from npm, never a
# CDN); the tests also get the dev dependencies (axe-core for the accessibility checks)
web=dockyard/web
if [ "$WANT_TEST" = 1 ]; then npm_omit=""; want_mod=axe-core; else npm_omit="--omit=dev"; want_mod=js-yaml; fi
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ] \
   || [ ! -d "$web/node_modules/$want_mod" ]; then
  if have npm; then
    # shellcheck disable=SC2086
    (cd "$web" && npm ci $npm_omit --no-audit --no-fund --loglevel=error >/dev/null)
  else
    echo "npm is missing: the dashboard's terminal and YAML editor will not load (install npm, run make install)" >&2
  fi
fi
