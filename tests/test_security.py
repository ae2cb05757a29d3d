"""No credentials in the repository (code, configuration, docs)."""

import subprocess


def test_the_patterns_catch_keys(scan_credentials) -> None:
    scan = scan_credentials
    fake_id = "AKIA" + "ABCDEFGHIJKLMNOP"
    fake_secret = "aws_secret_access_key = " + "a" * 40
    assert scan(fake_id) == ["AWS access key id"]
    assert scan(fake_secret) == ["AWS secret assignment"]
    assert scan("local-dummy-key") == []


def test_no_tracked_file_holds_a_credential(repo_root, scan_credentials) -> None:
    scan = scan_credentials
    files = subprocess.run(
        ["git", "ls-files"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(files) > 50
    found = {
        name: scan((repo_root / name).read_text(errors="ignore"))
        for name in files
        if (repo_root / name).is_file() and name != "requirements.lock"
    }
    assert {name: hits for name, hits in found.items() if hits} == {}
