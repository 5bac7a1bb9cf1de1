"""The build step pyproject.toml cannot declare: a wheel carries the files the app reads.

templates/, static/, migrations/ and alembic.ini stay at the top of the source tree, where a
checkout and an editable install read them. A built package gets a copy of them inside it, in
letters/bundled/, where letters.resources looks first. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
RESOURCES = ("templates", "static", "migrations", "alembic.ini")
SKIP = shutil.ignore_patterns("__pycache__", "*.py[co]")


class BuildWithResources(build_py):
    """Build the package, then copy the top-level resources into it (not when editable)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "letters" / "bundled"
        shutil.rmtree(target, ignore_errors=True)  # nothing stale from an earlier build
        target.mkdir(parents=True)
        for name in RESOURCES:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=SKIP)
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithResources})
