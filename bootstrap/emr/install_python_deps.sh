#!/usr/bin/env bash
# EMR bootstrap action, run on every node before Spark starts:
#   install_python_deps.sh s3://<staging>/bootstrap/requirements.lock
# Installs Python 3.11 and, with pip --require-hashes --no-deps, exactly the versions pinned in
# the project's lock (TensorFlow, Pillow, pyarrow, pandas, dagster + dagster-aws +
# dagster-pyspark at the host's versions, ...), except pyspark and py4j: the cluster's own
# Spark must stay the one Spark. Points PYSPARK_PYTHON at it. Idempotent: a marker named after
# the lock's digest skips a second run. Logs what it installed to /var/log/fruits-bootstrap.log.
#
# FRUITS_BOOTSTRAP_DRY_RUN=1 install_python_deps.sh path/to/requirements.lock
#   prints the requirement lines it would install, and changes nothing.
set -euo pipefail

readonly PYTHON=/usr/bin/python3.11
readonly STATE_DIR=/var/lib/fruits
readonly LOG=/var/log/fruits-bootstrap.log
# Provided by the cluster, never by pip.
readonly EXCLUDED="pyspark py4j"

log() { printf '[fruits-bootstrap] %s\n' "$*" | tee -a "$LOG" >&2; }

# The lock without the excluded packages: a requirement is its "name==version \" line plus
# the indented --hash and comment lines that follow it.
cluster_requirements() {
  awk -v excluded=" $EXCLUDED " '
    /^[A-Za-z0-9]/ { name = tolower($1); sub(/[=<>!~].*/, "", name); skip = index(excluded, " " name " ") > 0 }
    /^#/ { next }
    !skip { print }
  ' "$1"
}

main() {
  local lock_uri=${1:?usage: install_python_deps.sh s3://bucket/key/requirements.lock}
  if [ "${FRUITS_BOOTSTRAP_DRY_RUN:-0}" = 1 ]; then
    cluster_requirements "$lock_uri"
    return 0
  fi

  sudo mkdir -p "$STATE_DIR" && sudo touch "$LOG" && sudo chmod a+w "$LOG"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  aws s3 cp --only-show-errors "$lock_uri" "$work/requirements.lock"
  cluster_requirements "$work/requirements.lock" > "$work/cluster.txt"
  local marker
  marker="$STATE_DIR/installed-$(sha256sum "$work/cluster.txt" | cut -c1-16)"
  if [ -f "$marker" ]; then
    log "already installed ($marker)"
    return 0
  fi

  if ! command -v "$PYTHON" >/dev/null; then
    log "installing Python 3.11"
    sudo dnf install -y -q python3.11 python3.11-pip
  fi
  log "installing $(grep -c '==' "$work/cluster.txt") pinned packages from $lock_uri"
  sudo "$PYTHON" -m pip install --quiet --no-deps --require-hashes -r "$work/cluster.txt"
  "$PYTHON" -m pip freeze | tee -a "$LOG" >/dev/null
  # For shells on the node; Spark itself gets PYSPARK_PYTHON from the spark-env configuration.
  echo "export PYSPARK_PYTHON=$PYTHON" | sudo tee /etc/profile.d/fruits-pyspark.sh >/dev/null
  sudo touch "$marker"
  log "done"
}

main "$@"
