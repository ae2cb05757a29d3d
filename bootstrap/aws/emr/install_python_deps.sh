#!/usr/bin/env bash
# EMR bootstrap action, run on every node before Spark starts, with no internet needed:
#   install_python_deps.sh s3://<staging>/bootstrap/<digest> <region>
# Every S3 copy names the region: a node in a private subnet reaches S3 only through the
# region's gateway endpoint, and a client without a region would ask us-east-1.
# Installs into the node's Python 3.11 (from Amazon Linux's repository if the image lacks it
# or its pip), from the wheelhouse staged in that folder
# (bootstrap/aws/wheelhouse.py) and with no package index, exactly the versions of
# requirements-emr.lock: the runtime part of the project's lock, without pyspark and py4j
# (the cluster's own Spark stays the one Spark) and without the dev extra. pip runs with
# --no-index --require-hashes --no-deps. Idempotent: a marker named after the lock's digest
# skips a second run. pip's output goes to /var/log/fruits-bootstrap.log; a failure prints
# one line, naming what is missing, and exits non-zero (EMR then fails the node).
#
# FRUITS_NODE_ROOT (default /) is where the node's file system starts: the fake EMR
# (bootstrap/local/fake_node.py) runs this very script on a node laid out under a folder.
set -euo pipefail

readonly ROOT=${FRUITS_NODE_ROOT:-}
readonly PYTHON=$ROOT/usr/bin/python3.11
readonly STATE_DIR=$ROOT/var/lib/fruits
readonly LOG=$ROOT/var/log/fruits-bootstrap.log
readonly LOCK=requirements-emr.lock
readonly INSTALL_LIST=requirements.txt

log() { printf '[fruits-bootstrap] %s\n' "$*" >>"$LOG"; }

fail() {
  printf '[fruits-bootstrap] ERROR: %s\n' "$*" >&2
  printf '[fruits-bootstrap] ERROR: %s\n' "$*" 2>/dev/null >>"$LOG" || true
  exit 1
}

# The last line of a command's error output (file $1), for the one line of a failure.
last_error() { grep -v '^\s*$' "$1" | tail -n 1 | cut -c1-300; }

# pip's own ERROR line when it wrote one, else its last line.
pip_error() { { grep '^ERROR' "$1" | tail -n 1; } || last_error "$1"; }

copy_from_s3() {
  local source=$1 target=$2 errors=$3
  shift 3
  aws s3 cp --only-show-errors --region "$REGION" "$@" "$source" "$target" 2>"$errors" >>"$LOG" ||
    fail "cannot copy $source from S3: $(last_error "$errors")"
}

# Pins of the lock (name==version) that have no wheel in the folder $2.
missing_wheels() {
  local lock=$1 wheelhouse=$2 pin name version
  local wheels
  wheels=$(find "$wheelhouse" -maxdepth 1 -name '*.whl' -printf '%f\n' | tr 'A-Z.' 'a-z_')
  grep -E '^[A-Za-z0-9]' "$lock" | cut -d' ' -f1 | while read -r pin; do
    name=$(printf '%s' "${pin%%==*}" | tr 'A-Z.-' 'a-z__')
    version=${pin#*==}
    grep -q "^${name}-${version//./_}-" <<<"$wheels" || printf '%s\n' "$pin"
  done
}

# Python 3.11 and its pip, from Amazon Linux's own repository when the image lacks them (it
# is served from S3 in the region, reachable without internet through the S3 endpoint).
ensure_python() {
  if [ ! -x "$PYTHON" ]; then
    log "no $PYTHON: installing python3.11 from the distribution's repository"
    # shellcheck disable=SC2024  # the log is writable by all (main), sudo needs no redirect
    sudo dnf install -y -q python3.11 python3.11-pip >>"$LOG" 2>&1 ||
      fail "no $PYTHON on this node, and dnf could not install python3.11 (see $LOG)"
  fi
  "$PYTHON" -m pip --version >>"$LOG" 2>&1 && return 0
  log "pip missing for $PYTHON: installing python3.11-pip from the distribution's repository"
  # shellcheck disable=SC2024  # as above
  sudo dnf install -y -q python3.11-pip >>"$LOG" 2>&1 ||
    fail "pip is missing for $PYTHON and dnf could not install python3.11-pip (see $LOG)"
}

main() {
  local folder=${1:?usage: install_python_deps.sh s3://<staging>/bootstrap/<digest> <region>}
  folder=${folder%/}
  REGION=${2:?usage: install_python_deps.sh s3://<staging>/bootstrap/<digest> <region>}
  readonly REGION
  { sudo mkdir -p "$STATE_DIR" "$(dirname "$LOG")" && sudo touch "$LOG" && sudo chmod a+w "$LOG"; } \
    2>/dev/null || fail "cannot create $STATE_DIR and $LOG with sudo"
  work=$(mktemp -d 2>/dev/null) || fail "cannot create a temporary folder"
  # (work is global: the EXIT trap runs after main returns)
  trap 'rm -rf "$work"' EXIT

  copy_from_s3 "$folder/$LOCK" "$work/$LOCK" "$work/errors"
  local marker
  marker="$STATE_DIR/installed-$(sha256sum "$work/$LOCK" | cut -c1-16)"
  if [ -f "$marker" ]; then
    log "already installed ($marker)"
    return 0
  fi
  ensure_python
  copy_from_s3 "$folder/wheelhouse/" "$work/wheelhouse" "$work/errors" --recursive
  [ -f "$work/wheelhouse/$INSTALL_LIST" ] ||
    fail "no wheelhouse at $folder/wheelhouse/: stage it (python -m bootstrap.aws.wheelhouse stage)"
  local missing
  missing=$(missing_wheels "$work/$LOCK" "$work/wheelhouse") || fail "no pins in $folder/$LOCK"
  [ -z "$missing" ] ||
    fail "the wheelhouse at $folder/wheelhouse/ has no wheel for $(echo "$missing" | paste -sd' ')"

  log "installing $(grep -c '==' "$work/$LOCK") pinned packages from $folder"
  # shellcheck disable=SC2024  # as above
  sudo "$PYTHON" -m pip install --no-index --find-links "$work/wheelhouse" --require-hashes \
    --no-deps --ignore-requires-python --disable-pip-version-check \
    -r "$work/wheelhouse/$INSTALL_LIST" >>"$LOG" 2>"$work/errors" ||
    fail "pip could not install the wheelhouse: $(pip_error "$work/errors")"
  "$PYTHON" -m pip freeze >>"$LOG" 2>&1
  # For shells on the node; Spark itself gets PYSPARK_PYTHON from the spark-env configuration.
  echo "export PYSPARK_PYTHON=$PYTHON" | sudo tee "$ROOT/etc/profile.d/fruits-pyspark.sh" >/dev/null
  sudo touch "$marker"
  log "done"
}

main "$@"
