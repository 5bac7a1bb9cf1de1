"""A built wheel carries everything the app reads at run time, and runs from it alone.

The image installs a wheel, not the source tree (Dockerfile). These tests build one from the
files the Dockerfile's build stage copies, install it apart from the checkout and run it from
a folder outside the project: `letters migrate` on SQLite, then `letters serve --demo`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from letters.importer import DEMO_LETTER, parse_letter
from letters.settings import PROJECT_ROOT
from tests.live import base_env, http_client, running_server

DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
BUNDLED = "letters/bundled"


def build_stage_sources() -> list[str]:
    """What the Dockerfile copies into its build stage (the first), to build the wheel."""
    build_stage = DOCKERFILE.split("\nFROM ", 2)[1]
    sources: list[str] = []
    for line in re.findall(r"^COPY (?!--)(.+)$", build_stage, re.MULTILINE):
        sources += line.split()[:-1]
    return sources


def pip(*args: str | Path) -> None:
    """Run this Python's pip; on failure, show what it said."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "-q", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def source_files(folder: str) -> set[str]:
    """The files of a top-level folder of the checkout, as paths relative to the project."""
    return {
        path.relative_to(PROJECT_ROOT).as_posix()
        for path in (PROJECT_ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built as the image builds it: from the build stage's files, nothing else."""
    source = tmp_path_factory.mktemp("source")
    for name in build_stage_sources():
        if (PROJECT_ROOT / name).is_dir():
            shutil.copytree(
                PROJECT_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(PROJECT_ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    pip("wheel", "--no-deps", "-w", dist, source)
    (built,) = dist.glob("letters-*.whl")
    return built


def test_the_wheel_carries_templates_static_files_migrations_translations_and_the_demo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("templates", "static", "migrations"):
        expected = {f"{BUNDLED}/{name}" for name in source_files(folder)}
        assert expected, folder
        assert expected - names == set(), f"{folder} files missing from the wheel"
    assert f"{BUNDLED}/alembic.ini" in names
    assert f"{BUNDLED}/migrations/env.py" in names
    catalogs = {name for name in source_files("letters/locale") if name.endswith(".po")}
    assert catalogs and catalogs - names == set(), "translations missing from the wheel"
    assert DEMO_LETTER.relative_to(PROJECT_ROOT).as_posix() in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_an_installed_wheel_migrates_and_serves_the_demo_from_outside_the_project(wheel, tmp_path):
    target = tmp_path / "site"
    pip("install", "--no-deps", "--target", target, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database_url = f"sqlite:///{tmp_path / 'letters.db'}"
    # Only the installed package: not the checkout the tests run from (the dependencies come
    # from this Python's own site-packages).
    env = base_env(database_url, PYTHONPATH=str(target))
    env.pop("INSTANCE_PATH", None)

    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import letters.resources as r, letters.settings as s; "
            "print(r.ROOT); print(s.Settings().instance_path)",
        ],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert where == [str(target / "letters" / "bundled"), str(elsewhere / "instance")]

    migrated = subprocess.run(
        [target / "bin" / "letters", "migrate"],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr

    slug = parse_letter(DEMO_LETTER.read_text(encoding="utf-8")).slug
    with (
        running_server(database_url, elsewhere, "--demo", PYTHONPATH=str(target)) as server,
        http_client(server.url) as client,
    ):
        page = client.get(f"/es/letters/{slug}")
        assert page.status_code == 200
        assert "Idioma" in page.text  # the Spanish catalog came with the package
        stylesheet = client.get("/static/css/site.css")
        assert stylesheet.status_code == 200
        assert stylesheet.text == (PROJECT_ROOT / "static/css/site.css").read_text()
