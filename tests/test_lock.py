"""The one lock stays true to pyproject.toml: `make lock` on it changes nothing."""

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.mark.slow
def test_make_lock_reproduces_the_committed_lock(repo_root: Path, tmp_path: Path) -> None:
    committed = repo_root / "requirements.lock"
    scratch = tmp_path / "requirements.lock"
    shutil.copy(committed, scratch)
    done = subprocess.run(
        ["make", "lock", f"LOCK={scratch}"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    def pins(text: str) -> list[str]:  # the header names the output path: compare the pins
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert pins(scratch.read_text()) == pins(committed.read_text()), (
        "requirements.lock is stale: run `make lock` and commit it"
    )
