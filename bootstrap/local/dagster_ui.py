"""`make ui`: the Dagster UI (webserver + daemon) with `dg dev` on workspace.yaml, on loopback.

python -m bootstrap.local.dagster_ui [--port 3000]    replaces itself with `dg dev`

A job started in the background by a script inherits SIGINT ignored, and Dagster maps SIGTERM
onto SIGINT's handler: `dg dev` would then ignore both, and only SIGKILL (which leaves the
daemon's runs behind) would stop it. The default dispositions are restored before the exec.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bootstrap import cli
from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.local.processes import default_signals

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = REPO_ROOT / "workspace.yaml"


def dg_dev_command(port: int) -> list[str]:
    dg = str(Path(sys.executable).with_name("dg"))
    return [dg, "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)]


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.local.dagster_ui", __doc__)
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home())
    default_signals()
    command = dg_dev_command(args.port)
    os.chdir(REPO_ROOT)
    os.execv(command[0], command)  # returns only by raising


if __name__ == "__main__":
    sys.exit(main())
