"""The cluster's Python packages as wheels: built here, staged on S3, installed with no index.

    python -m bootstrap.aws.wheelhouse build     prints the local wheelhouse (built once per lock)
    python -m bootstrap.aws.wheelhouse stage     builds it, stages it beside the bootstrap action

EMR 7.x nodes run Amazon Linux 2023 (glibc 2.34) on x86_64 with CPython 3.11: the wheels are
the ones pip would pick there, tagged manylinux_2_28 or older (the target `make lock` resolves
for). They come from requirements-emr.lock, the runtime part of the one lock, hash-checked;
a pin with no such wheel is built here from its hash-checked sdist, and must be pure Python.

The wheelhouse is cached under ~/.cache/fruits/wheelhouse/<lock digest>/ (XDG_CACHE_HOME
respected), so tests and clean clones download it once per machine. It holds the wheels and
requirements.txt, the install list: every pin with the hash of its wheel in the wheelhouse.

Staged, under one digest of the bootstrap action and the lock, so that a cluster keeps
installing what it was created with even after a newer lock is staged:
    <staging>/bootstrap/<digest>/install_python_deps.sh
    <staging>/bootstrap/<digest>/requirements-emr.lock
    <staging>/bootstrap/<digest>/wheelhouse/{*.whl, requirements.txt}
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from bootstrap import cli
from spark.layout import split_uri, staging_uri
from spark.settings import PROJECT_ROOT, ConfigError, Settings, user_cache
from spark.storage import SSE, s3_client

CLUSTER_LOCK = PROJECT_ROOT / "requirements-emr.lock"
BOOTSTRAP_SCRIPT = PROJECT_ROOT / "bootstrap" / "aws" / "emr" / "install_python_deps.sh"
INSTALL_LIST = "requirements.txt"
WHEELHOUSE = "wheelhouse"
# glibc 2.28 down to 2.5, as pip on the node accepts them (pip does not expand
# --platform to older manylinux tags itself), and the legacy aliases of 2.17, 2.12 and 2.5.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def matches(self, wheel: str) -> bool:
        """Whether a wheel file name (PEP 427: name-version-...) is this pin's."""
        name, version = wheel.split("-")[:2]
        return canonical(name) == canonical(self.name) and Version(version) == Version(self.version)

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path = CLUSTER_LOCK) -> list[Pin]:
    """The `name==version` lines of a uv-compiled lock."""
    return [
        Pin(*line.split()[0].split("=="))
        for line in lock.read_text().splitlines()
        if line[:1].isalnum() and "==" in line
    ]


def digest(*paths: Path) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def bundle_digest(script: Path = BOOTSTRAP_SCRIPT, lock: Path = CLUSTER_LOCK) -> str:
    """Names the staged folder: a change to the action or to the lock stages a new one."""
    return digest(script, lock)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")]
        last = (errors or done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{what} failed: {last}")


def download(lock: Path, target: Path) -> None:
    """The lock's files for the cluster, hash-checked: a wheel where one fits, else the sdist.

    --ignore-requires-python: uv, which resolves the lock, ignores upper bounds of
    Requires-Python (backports-strenum), and the host's .venv holds the same versions.
    """
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--require-hashes", "--ignore-requires-python", *platforms,
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
         "-r", str(lock), "-d", str(target)],
        f"downloading the wheels of {lock.name}",
    )  # fmt: skip


def build_sdists(target: Path) -> None:
    """Wheels for pins published as sdists only: built here, so pure Python only."""
    for sdist in sorted(p for p in target.iterdir() if not p.name.endswith(".whl")):
        with tempfile.TemporaryDirectory() as out:
            _run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "-w", out, str(sdist)],
                f"building a wheel from {sdist.name}",
            )  # fmt: skip
            (wheel,) = Path(out).glob("*.whl")
            if not wheel.name.endswith("-none-any.whl"):
                raise ConfigError(
                    f"{sdist.name} has no manylinux wheel and builds {wheel.name} here, "
                    f"which may not run on Amazon Linux 2023: pin a version with a wheel"
                )
            shutil.move(str(wheel), target / wheel.name)
        sdist.unlink()


def sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write_install_list(lock: Path, wheelhouse: Path) -> None:
    """requirements.txt: each pin with the hash of its wheel here (the node installs it with
    --require-hashes). A pin without a wheel is an error, never a silent gap."""
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
    lines = []
    for pin in lock_pins(lock):
        found = [w for w in wheels if pin.matches(w)]
        if not found:
            raise ConfigError(f"the wheelhouse has no wheel for {pin}")
        lines.append(f"{pin} --hash=sha256:{sha256(wheelhouse / found[0])}")
    (wheelhouse / INSTALL_LIST).write_text("\n".join(lines) + "\n")


def build(lock: Path = CLUSTER_LOCK, cache: Path | None = None) -> Path:
    """The wheelhouse of `lock`, built once into the cache (a finished one is never rebuilt)."""
    target = (cache or user_cache(WHEELHOUSE)) / digest(lock)
    if (target / INSTALL_LIST).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        download(lock, scratch)
        build_sdists(scratch)
        write_install_list(lock, scratch)
        try:
            scratch.rename(target)
        except OSError:  # built meanwhile by another process: theirs is as good
            if not (target / INSTALL_LIST).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def staged_files(wheelhouse: Path, lock: Path = CLUSTER_LOCK) -> dict[str, Path]:
    """Key under the staged folder -> local file; the bootstrap action last, so that a
    folder whose action is present is complete."""
    files = {f"{WHEELHOUSE}/{p.name}": p for p in sorted(wheelhouse.iterdir()) if p.is_file()}
    return files | {lock.name: lock, BOOTSTRAP_SCRIPT.name: BOOTSTRAP_SCRIPT}


def stage(s3: Any, folder_uri: str, wheelhouse: Path, lock: Path = CLUSTER_LOCK) -> list[str]:
    """Uploads what the folder lacks (same name, same size: already there); returns the keys
    uploaded. Re-staging an unchanged lock costs one listing."""
    bucket, prefix = split_uri(folder_uri)
    present: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        present |= {o["Key"]: o["Size"] for o in page.get("Contents", [])}
    uploaded = []
    for name, path in staged_files(wheelhouse, lock).items():
        key = f"{prefix}/{name}"
        if present.get(key) != path.stat().st_size:
            s3.upload_file(str(path), bucket, key, ExtraArgs=SSE)
            uploaded.append(key)
    return uploaded


# --- where it is staged -------------------------------------------------------------------

TLS_ZIP = "emr-tls.zip"  # under <staging>/bootstrap/, where the instance role may read it


def staging(settings: Settings, *parts: str) -> str:
    if not settings.staging_bucket:
        raise ConfigError("FRUITS_STAGING_BUCKET is not set")
    return staging_uri(settings.staging_bucket, settings.staging_prefix, *parts)


def bootstrap_uri(settings: Settings) -> str:
    """The staged bootstrap action, cluster lock and wheelhouse, under their content's digest."""
    return staging(settings, "bootstrap", bundle_digest())


def upload_bootstrap(settings: Settings) -> str:
    """Stages what the bootstrap action installs from (the wheelhouse is built here, once per
    lock); returns the staged folder."""
    folder = bootstrap_uri(settings)
    stage(s3_client(settings), folder, build())
    return folder


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bootstrap.aws.wheelhouse", __doc__)
    parser.add_argument("command", choices=["build", "stage"])
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build())
        return 0
    from fruits_assets.deployments import current_settings  # the definitions: only here

    print(upload_bootstrap(current_settings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
