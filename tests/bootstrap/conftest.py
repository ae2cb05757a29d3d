"""A tiny stand-in for the cluster's wheelhouse: wheels written here, staged on the test S3."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from bootstrap import wheelhouse


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of one module holding VERSION (PEP 427, with its RECORD), named as
    wheels are: `Fruits.Probe` gives fruits_probe-<version>-py3-none-any.whl."""
    module = re.sub(r"[-_.]+", "_", name).lower()
    dist = f"{module}-{version}"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: fruits-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    files[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, data in files.items():
            archive.writestr(name_in_zip, data)
    return path


@pytest.fixture(scope="session")
def stage_wheelhouse(settings, s3, tmp_path_factory):
    """stage(pins, wheels=...) -> the s3:// folder of a bootstrap bundle whose lock pins `pins`
    (name==version) and whose wheelhouse holds wheels of `wheels` only (all pins by default)."""

    def _stage(pins: list[str], wheels: list[str] | None = None) -> str:
        folder = tmp_path_factory.mktemp("wheelhouse")
        house = folder / "wheelhouse"
        house.mkdir()
        lock = folder / wheelhouse.CLUSTER_LOCK.name
        lock.write_text("".join(f"{pin} \\\n    --hash=sha256:{'0' * 64}\n" for pin in pins))
        for pin in pins if wheels is None else wheels:
            make_wheel(house, *pin.split("=="))
        kept = [p for p in pins if wheels is None or p in wheels]
        wheelhouse.write_install_list(_lock_of(folder, kept), house)
        uri = f"s3://{settings.bucket}/fake_node/{folder.name}"
        wheelhouse.stage(s3, uri, house, lock)
        return uri

    def _lock_of(folder: Path, pins: list[str]) -> Path:
        lock = folder / "installable.lock"
        lock.write_text("".join(f"{pin}\n" for pin in pins))
        return lock

    return _stage


@pytest.fixture(scope="session")
def wheel_file():
    """make_wheel, for tests: wheel_file(folder, name, version) -> the .whl written."""
    return make_wheel
