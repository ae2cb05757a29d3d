#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine, idempotently:
#   bootstrap/local/setup.sh demo   what the demo and the UI run on (make demo, make ui):
#     - system packages: Python 3.11, Java 17 (Spark 3.5), Maven (fetches the S3A jars),
#       PostgreSQL (the database of the local Iceberg catalog: bootstrap/local/local_catalog.py);
#     - .venv from requirements.lock (the one lock of every Python version), plus this project;
#     - .jars/: hadoop-aws and the AWS SDK modules S3A needs (bootstrap/local/jars/pom.xml);
#   bootstrap/local/setup.sh [test] all of that, and what only the tests use (make test):
#     the shell linter they run on the EMR bootstrap action, and headless Chromium for the
#     browser test of the Dagster UI (Playwright drives Debian's build; it downloads none).
# Each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-test}
case "$MODE" in
  demo | test) ;;
  *) echo "usage: bootstrap/local/setup.sh [demo|test]" >&2; exit 2 ;;
esac

log() { printf '[setup] %s\n' "$*"; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }

system_packages() {
  local missing=()
  command -v python3.11 >/dev/null || missing+=(python3.11 python3.11-venv)
  [ "$(java_major 2>/dev/null || true)" = "17" ] || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  # Debian keeps the server's binaries off PATH, one folder per major version (the package
  # also creates the `postgres` system user the catalog runs as under root).
  command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
    || missing+=(postgresql)
  if [ "$MODE" = test ]; then
    # The tests lint the EMR bootstrap action with it.
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    # tests/ui drives it through Playwright (executable_path), headless.
    [ -x /usr/bin/chromium ] || missing+=(chromium)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

python_env() {
  local stamp
  stamp=.venv/.installed-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
  [ -f "$stamp" ] && return 0
  log "creating .venv from requirements.lock"
  [ -x .venv/bin/python ] || python3.11 -m venv .venv
  local uv_version
  uv_version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements.lock)
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==${uv_version}"
  .venv/bin/uv pip sync -q --python .venv/bin/python requirements.lock
  .venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
}

s3a_jars() {
  local stamp
  stamp=.jars/.fetched-$(sha256sum bootstrap/local/jars/pom.xml | cut -c1-16)
  [ -f "$stamp" ] && return 0
  log "fetching the S3A jars from Maven Central into .jars/"
  rm -rf .jars
  mvn -q -B -Dstyle.color=never -f bootstrap/local/jars/pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/.jars"
  touch "$stamp"
  log "$(du -sh .jars | cut -f1) of jars in .jars/"
}

system_packages
python_env
s3a_jars
