"""bootstrap.cli: the one pattern of every command-line tool."""

from pathlib import Path

import pytest

from bootstrap import cli
from spark.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]
# The fake node's `aws` shim imitates the AWS CLI's arguments, not this project's.
NOT_OURS = {"bootstrap.local.fake_node"}
TOOLS = (
    set(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for folder in ("bootstrap", "bench", "spark")
        for path in (ROOT / folder).rglob("*.py")
        if "\ndef main(" in path.read_text()
    )
    - NOT_OURS
)


@pytest.mark.parametrize("module", sorted(TOOLS))
def test_every_tool_follows_the_pattern(module: str) -> None:
    source = (ROOT / Path(*module.split("."))).with_suffix(".py").read_text()
    assert "\n@cli.command\ndef main(argv: list[str] | None = None" in source
    assert "argparse.ArgumentParser(" not in source  # cli.parser builds them
    assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())')


def test_the_tools_are_found() -> None:
    assert {
        "bootstrap.aws.emr_cluster",
        "bootstrap.local.local_catalog",
        "bootstrap.sample.demo",
        "bench.run",
    } <= TOOLS


def test_a_configuration_error_is_one_line_and_exit_2(capsys) -> None:
    @cli.command
    def main(argv: list[str] | None = None) -> int:
        raise ConfigError("FRUITS_BUCKET is not set")

    assert main([]) == 2
    assert capsys.readouterr().err == "error: FRUITS_BUCKET is not set\n"


def test_usage_errors_and_help_return_argparse_s_codes(capsys) -> None:
    @cli.command
    def main(argv: list[str] | None = None) -> int:
        parser = cli.parser("bootstrap.example", "What it does.")
        parser.add_argument("command", choices=["go"])
        parser.parse_args(argv)
        return 0

    assert main(["go"]) == 0
    assert main(["stop"]) == 2 and "invalid choice: 'stop'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m bootstrap.example")
