"""No credentials in the repository (code, configuration, docs)."""

import re
import subprocess

KEY_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret assignment": re.compile(
        r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b", re.IGNORECASE
    ),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def scan(text: str) -> list[str]:
    return [name for name, pattern in KEY_PATTERNS.items() if pattern.search(text)]


def test_the_patterns_catch_keys() -> None:
    fake_id = "AKIA" + "ABCDEFGHIJKLMNOP"
    fake_secret = "aws_secret_access_key = " + "a" * 40
    assert scan(fake_id) == ["AWS access key id"]
    assert scan(fake_secret) == ["AWS secret assignment"]
    assert scan("local-dummy-key") == []


def test_no_tracked_file_holds_a_credential(repo_root) -> None:
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
