"""The README's quick start and .ci/run stay in step."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _code_lines(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            lines.append(line.strip())
    return lines


def test_ci_runs_the_readme_test_command():
    readme = _code_lines((ROOT / "README.md").read_text())
    test_cmd = next(line for line in readme if "pytest" in line)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci


def test_readme_main_job_runs_distill():
    readme = _code_lines((ROOT / "README.md").read_text())
    assert any(line.endswith("distill --teacher ensemble --budget 50") and "pip install" in line for line in readme)


def test_readme_runtime_only_install_is_the_tested_one():
    """tests/test_runtime_install.py pip-installs this repository with no extras: the README's device-side install
    command is that one."""
    readme = _code_lines((ROOT / "README.md").read_text())
    assert "pip install ." in readme
    assert 'str(ROOT)]' in (ROOT / "tests" / "test_runtime_install.py").read_text()
