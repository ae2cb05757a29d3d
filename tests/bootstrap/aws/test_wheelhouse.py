"""The cluster's wheelhouse: every pin of requirements-emr.lock as a wheel, staged once."""

import tarfile

import pytest

from bootstrap.aws import wheelhouse
from bootstrap.aws.wheelhouse import Pin, lock_pins, main, write_install_list
from spark.settings import ConfigError


def test_a_pin_matches_its_wheel_whatever_the_spelling() -> None:
    pin = Pin("Fruits.Other-Probe", "2.0")
    assert pin.matches("fruits_other_probe-2.0-py3-none-any.whl")
    assert pin.matches("Fruits_Other_Probe-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert not pin.matches("fruits_other_probe-2.1-py3-none-any.whl")
    assert not pin.matches("fruits_other-2.0-py3-none-any.whl")


def test_the_install_list_hashes_each_pin_s_wheel_or_fails(tmp_path, wheel_file) -> None:
    lock = tmp_path / "requirements-emr.lock"
    lock.write_text("fruits-probe==1.0 \\\n    --hash=sha256:00\nfruits-absent==2.0\n")
    wheel = wheel_file(tmp_path, "fruits-probe", "1.0")
    with pytest.raises(ConfigError, match="no wheel for fruits-absent==2.0"):
        write_install_list(lock, tmp_path)
    lock.write_text("fruits-probe==1.0 \\\n    --hash=sha256:00\n")
    write_install_list(lock, tmp_path)
    listed = (tmp_path / wheelhouse.INSTALL_LIST).read_text()
    assert listed == f"fruits-probe==1.0 --hash=sha256:{wheelhouse.sha256(wheel)}\n"


def test_the_cli_stages_the_wheelhouse_beside_the_bootstrap_action(
    settings, s3, local_s3, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", settings.bucket)
    assert main(["stage"]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder == f"s3://{settings.bucket}/emr_staging/bootstrap/{wheelhouse.bundle_digest()}"
    built = wheelhouse.build()  # cached: the one `stage` used
    assert wheelhouse.stage(s3, folder, built) == []  # all there: nothing uploaded again
    listed = (built / wheelhouse.INSTALL_LIST).read_text().splitlines()
    assert [line.split()[0] for line in listed] == [str(pin) for pin in lock_pins()]


def test_a_pin_published_as_an_sdist_only_becomes_a_pure_wheel(tmp_path) -> None:
    """(No pin of today's lock needs it: every one has a manylinux or pure wheel.)"""
    source = tmp_path / "fruits_sdist_probe-1.0"
    (source / "fruits_sdist_probe").mkdir(parents=True)
    (source / "fruits_sdist_probe" / "__init__.py").write_text("VERSION = '1.0'\n")
    (source / "pyproject.toml").write_text(
        '[project]\nname = "fruits-sdist-probe"\nversion = "1.0"\n'
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    house = tmp_path / "house"
    house.mkdir()
    with tarfile.open(house / "fruits_sdist_probe-1.0.tar.gz", "w:gz") as sdist:
        sdist.add(source, arcname=source.name)
    wheelhouse.build_sdists(house)
    assert [p.name for p in house.iterdir()] == ["fruits_sdist_probe-1.0-py3-none-any.whl"]
