"""The README's first command, as `.ci/run` checks it (`.ci/quickstart.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from letters.importer import DEMO_LETTER, parse_letter
from letters.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "quickstart", PROJECT_ROOT / ".ci" / "quickstart.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_check_reads_the_readme_s_first_command_and_the_demo_letter_s_address():
    command, url = quickstart().readme_first_command(README)
    assert command == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/letters serve --demo"
    )
    demo = parse_letter(DEMO_LETTER.read_text(encoding="utf-8"))
    assert url == f"http://127.0.0.1:8000/letters/{demo.slug}"


def test_ci_runs_the_first_command_before_the_tests():
    run = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run.index("python3 .ci/quickstart.py") < run.index('bash -c "$test_command"')


def test_the_clean_copy_has_the_project_s_files_and_nothing_ignored(tmp_path: Path):
    quickstart().clean_copy(tmp_path)
    for name in ("pyproject.toml", "README.md", "letters/cli.py", "templates", "migrations"):
        assert (tmp_path / name).exists(), name
    for name in (".venv", "instance", ".git"):
        assert not (tmp_path / name).exists(), name
    assert not list(tmp_path.rglob("__pycache__"))
