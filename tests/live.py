"""A really running `letters serve` for the tests that talk to it over loopback HTTP.

The server runs in a subprocess with its settings in the environment, as in production,
in its own process group (so it stops with all its workers), with its output kept in a
file so a test can check what it logged.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.conftest import SECRET, free_port

# Bounds, not expectations: a server on a busy machine may take a while to start, or its
# supervisor to notice a killed worker; a passing test never waits them out.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0
# Settings a `letters` subprocess must not inherit from the environment running the tests.
OWN_SETTINGS = ("DATABASE_URL", "SECRET_KEY", "BASE_URL", "SMTP_URL", "ENVIRONMENT", "MAIL_IN_APP")
OWN_PREFIXES = ("LIMIT_", "CACHE_", "DB_")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes started so far (in the order they started)."""
        return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", self.log())]


def letters_command(*args: str) -> list[str]:
    """The command line of `letters ARGS`, run by this test's Python."""
    return [sys.executable, "-m", "letters.cli", *args]


def base_env(database_url: str, smtp_url: str = "", **extra: str) -> dict[str, str]:
    """The environment of a `letters` subprocess: this test's database, nothing inherited."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in OWN_SETTINGS and not key.startswith(OWN_PREFIXES)
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": SECRET,
            "ENVIRONMENT": "test",
            "SMTP_URL": smtp_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process (SIGTERM, as a process manager would), then SIGKILL whatever is
    left of its own process group (uvicorn and any workers), so nothing outlives the test."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the group started for this process only
    process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running_server(
    database_url: str, tmp_path: Path, *args: str, smtp_url: str = "", **env: str
) -> Iterator[Server]:
    """Start `letters serve --port P ARGS`, wait for /healthz (bounded), and always stop it
    afterwards. `env` adds to (or overrides) the settings given by `base_env`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = base_env(
        database_url, smtp_url, BASE_URL=url, INSTANCE_PATH=str(tmp_path / "instance"), **env
    )
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            letters_command("serve", "--port", str(port), *args),
            env=environment,
            cwd=tmp_path,  # no stray .env file from the checkout
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so workers stop with it
        )
    server = Server(url=url, process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # One client for all the polls: each new one builds a TLS context, ~10 ms of CPU.
        with httpx.Client(timeout=1.0, trust_env=False) as probe:
            while True:
                if process.poll() is not None:
                    log = server.log()
                    raise AssertionError(f"server exited with {process.returncode}:\n{log}")
                try:
                    if probe.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not ready in {START_TIMEOUT}s:\n{server.log()}")
                time.sleep(0.02)
        yield server
    finally:
        stop_process(process)


def wait_for_log(server: Server, text: str, count: int = 1) -> None:
    """Wait (bounded) until the server has logged `text` `count` times; fail if it exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while server.log().count(text) < count:
        assert server.process.poll() is None, f"server exited:\n{server.log()}"
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times:\n{server.log()}"
        time.sleep(0.1)


def http_client(url: str, **options: Any) -> httpx.Client:
    """A client for the server at `url`, ignoring any proxy settings of the environment."""
    return httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT, trust_env=False, **options)
