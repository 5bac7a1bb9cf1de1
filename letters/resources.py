"""Where the files the app reads at run time are: templates, static files, migrations.

A checkout (and an editable install) keeps templates/, static/, migrations/ and alembic.ini
at the top of the source tree, beside the package. A wheel carries a copy of them inside the
package, in letters/bundled/ (setup.py puts it there). The copy inside wins when it exists,
so an installed package reads what it was built with, never a folder beside site-packages.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
_BUNDLED = PACKAGE / "bundled"
INSTALLED = _BUNDLED.is_dir()
ROOT = _BUNDLED if INSTALLED else PACKAGE.parent

TEMPLATES = ROOT / "templates"
EMAIL_TEMPLATES = TEMPLATES / "email"
STATIC = ROOT / "static"
MIGRATIONS = ROOT / "migrations"
ALEMBIC_INI = ROOT / "alembic.ini"


def default_instance_path() -> Path:
    """The folder for a development database and secret key: `instance/` in the source tree,
    else (an installed package, whose own folder may not be writable) in the working one."""
    return (Path.cwd() if INSTALLED else ROOT) / "instance"
