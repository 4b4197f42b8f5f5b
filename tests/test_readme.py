"""README is the contract: it opens with the two set-up commands and documents every check id."""

from pathlib import Path

from diagnostics.checks import all_checks

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    fence = lines.index("```sh")
    commands = [line.split("#", 1)[0].strip() for line in lines[fence + 1 : lines.index("```", fence + 1)]]
    assert commands == ["bash bootstrap.sh demo", "bash bootstrap.sh test"]
    assert all(not line.strip() or line.startswith("#") for line in lines[:fence])


def test_every_check_id_is_documented() -> None:
    text = README.read_text()
    missing = [spec.id for spec in all_checks() if f"`{spec.id}`" not in text]
    assert not missing, f"README does not document {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash bootstrap.sh test" in ci
