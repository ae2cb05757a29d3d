"""DAGSTER_HOME for local use: .fruits/dagster_home (git-ignored) with the project's dagster.yaml.

python -m bootstrap.local.dagster_home    prepares $DAGSTER_HOME (that default if unset), prints it
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bootstrap.local.local_s3 import STATE_DIR

DAGSTER_HOME = STATE_DIR / "dagster_home"
# The local Dagster instance: its run queue, one run per partition key at a time.
DAGSTER_YAML = Path(__file__).with_name("dagster.yaml")


def prepare_dagster_home(home: Path | None = None) -> Path:
    """`home`, else $DAGSTER_HOME, else .fruits/dagster_home: created, with dagster.yaml."""
    home = home or Path(os.environ.get("DAGSTER_HOME") or DAGSTER_HOME)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    return home


if __name__ == "__main__":
    print(prepare_dagster_home())
    sys.exit(0)
