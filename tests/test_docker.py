"""The Docker image and the Compose stack, checked from their text (no Docker here), and the
image's health check run for real against a running server."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml

from letters.settings import PROJECT_ROOT
from tests.conftest import free_port
from tests.live import running_server

DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
# A tag that names a version (1.22.3, 16.6-bookworm), not `latest` or a bare major version.
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+(\.\d+)?(-[\w.-]+)?$")


def healthcheck_command() -> list[str]:
    match = re.search(r"^HEALTHCHECK [^[]*?CMD (\[[^\n]*\])$", DOCKERFILE, re.MULTILINE)
    assert match, "the Dockerfile has no HEALTHCHECK in exec form"
    command: list[str] = json.loads(match.group(1))
    return command


def test_every_image_is_pinned_to_a_version():
    images = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert len(images) == 2 and len(set(images)) == 1, "one Python image builds and runs"
    images += [service["image"] for service in COMPOSE["services"].values() if "image" in service]
    assert len(images) == 4
    for image in images:
        assert PINNED.match(image), f"{image} is not pinned to a version"


def test_the_image_installs_a_built_wheel_without_the_test_extras():
    assert re.search(r"^RUN pip wheel [^\n]*--no-deps -w /wheels \.$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^RUN pip install [^\n]*/wheels/\*\.whl ", DOCKERFILE, re.MULTILINE)
    assert " -e " not in DOCKERFILE, "the image runs the installed package, not a source tree"
    assert "[test]" not in DOCKERFILE
    assert ".venv/bin/pip install -q -e . &&" in README


def test_the_health_check_asks_for_readiness_with_python_only():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/readyz" in command[2]
    assert not {"curl", "wget"} & set(re.findall(r"\w+", " ".join(command)))  # not in slim


def test_the_health_check_passes_on_a_ready_server_and_fails_without_its_database(
    database_url, letter, tmp_path
):
    code = healthcheck_command()[2]
    with running_server(database_url, tmp_path) as server:
        ready = subprocess.run(
            [sys.executable, "-c", code.replace("http://127.0.0.1:8000", server.url)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert ready.returncode == 0, ready.stderr
    unreachable = f"postgresql://letters@127.0.0.1:{free_port()}/letters"
    lonely = tmp_path / "no-database"
    lonely.mkdir()
    with running_server(unreachable, lonely, MAIL_IN_APP="false") as server:
        down = subprocess.run(
            [sys.executable, "-c", code.replace("http://127.0.0.1:8000", server.url)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert down.returncode != 0
        assert b"503" in down.stderr


def test_compose_starts_the_app_once_its_database_and_mail_catcher_are_healthy():
    app = COMPOSE["services"]["app"]
    assert app["command"][-1] == "--demo"
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "mailpit": {"condition": "service_healthy"},
    }
    for name in ("db", "mailpit"):
        assert COMPOSE["services"][name]["healthcheck"]["test"]


def test_the_readme_says_what_compose_starts():
    section = README.split("## Running with Docker Compose", 1)[1].split("\n## ", 1)[0]
    for words in ("docker compose up", "/readyz", "first time"):
        assert words in section, words
