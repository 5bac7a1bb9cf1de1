"""Run the README's first command exactly, as a newcomer would, and check the demo answers.

The command runs on a clean copy of the project (the files git knows, as they are in the
work tree) in its own fresh virtual environment, without the test extras, so a dependency
that only the tests install cannot hide a crash on start. pip's cache is reused. Once the
server answers, the demo letter page must answer 200 and a sign request 202; then the server
is stopped, and every module of the package must import in that environment. Exit status 0
on success; otherwise the server's output is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 600  # installing on a cold pip cache can be slow; a warm one takes seconds
# Settings a newcomer's shell would not have; the test run may set them.
UNSET = ("DATABASE_URL", "TEST_DATABASE_URL", "SMTP_URL", "BASE_URL", "SECRET_KEY", "ENVIRONMENT")


def readme_first_command(readme: str) -> tuple[str, str]:
    """The line after `# run the app` in the quick start, and the demo letter's address."""
    command = re.search(r"^# run the app.*\n(.+)$", readme, re.MULTILINE)
    url = re.search(r"Open <(http://127\.0\.0\.1:\d+/letters/[a-z0-9-]+)>", readme)
    if command is None or url is None:
        raise SystemExit("quickstart: cannot find the first command or the demo address in README")
    return command.group(1).strip(), url.group(1)


def clean_copy(destination: Path) -> None:
    """Copy the files git knows (tracked, or new and not ignored) as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def request(url: str, body: dict[str, object] | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def wait_until_up(base: str, server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            if request(f"{base}/healthz") == 200:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def port_in_use(base: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> int:
    command, letter_url = readme_first_command((ROOT / "README.md").read_text(encoding="utf-8"))
    base = letter_url.split("/letters/")[0]
    slug = letter_url.rsplit("/", 1)[1]
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    if port_in_use(base):
        # Another server there would answer in place of the one started here.
        print(f"quickstart: something already listens at {base}: stop it first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="letters-quickstart-") as directory:
        work = Path(directory)
        clean_copy(work)
        log_path = work.parent / f"{work.name}.log"
        started = time.monotonic()
        with log_path.open("wb") as log:
            server = subprocess.Popen(  # noqa: S602 - the README's command, run as a shell would
                command,
                shell=True,
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                failure = check(base, slug, letter_url, server)
            finally:
                stop(server)
        output = log_path.read_text(errors="replace")
        log_path.unlink()
        if failure is None:
            failure = import_everything(work)
    if failure is None and "Traceback" in output:
        failure = "the server logged a traceback"
    if failure is not None:
        print(output, file=sys.stderr)
        print(f"quickstart: FAILED: {failure}\n  command: {command}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(f"quickstart: the README's first command serves the demo ({seconds:.0f} s)")
    return 0


# Every module of the package, so one imported only by a command or on a rare path cannot
# need a package that only the test extras install.
IMPORT_ALL = (
    "import importlib, pkgutil, letters\n"
    "for module in pkgutil.walk_packages(letters.__path__, 'letters.'):\n"
    "    importlib.import_module(module.name)\n"
)


def import_everything(work: Path) -> str | None:
    python = work / ".venv" / "bin" / "python"
    imported = subprocess.run(  # noqa: S603 - the venv made by the README's command
        [str(python), "-c", IMPORT_ALL], cwd=work, capture_output=True, text=True, check=False
    )
    if imported.returncode != 0:
        return f"a module of the package does not import:\n{imported.stderr}"
    return None


def check(base: str, slug: str, letter_url: str, server: subprocess.Popen[bytes]) -> str | None:
    """None if the server came up and answered as it should, else what went wrong."""
    if not wait_until_up(base, server):
        return f"the server did not answer {base}/healthz (exit status {server.poll()})"
    status = request(letter_url)
    if status != 200:
        return f"GET {letter_url} answered {status}, not 200"
    sign = f"{base}/api/letters/{slug}/signatures"
    status = request(sign, {"email": "newcomer@microsoft.com", "name": "", "show_name": False})
    if status != 202:
        return f"POST {sign} answered {status}, not 202"
    return None


if __name__ == "__main__":
    sys.exit(main())
