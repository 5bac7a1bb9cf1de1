"""A shared cache in front (nginx's proxy_cache, as a CDN would) serves the letter page to
its readers without reaching the app, and a signer still sees their own signature."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import Mailbox, free_port
from tests.helpers import csrf_from
from tests.live import http_client, running_server, stop_process

NGINX = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

# The cache keeps an answer as long as the app's Cache-Control says (a second for the
# letter page), and never one that sets a cookie or says private or no-cache. One process,
# as whoever runs the tests, so that it can write its cache in the test's folder.
CONFIG = """
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    proxy_cache_path {tmp}/cache keys_zone=letters:1m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_cache letters;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


@contextmanager
def nginx_in_front(upstream: str, tmp_path: Path) -> Iterator[str]:
    tmp = tmp_path / "nginx"
    tmp.mkdir()
    port = free_port()
    config = tmp / "nginx.conf"
    config.write_text(CONFIG.format(tmp=tmp, port=port, upstream=upstream))
    assert NGINX is not None
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(tmp),
            "-e",
            str(tmp / "error.log"),
            "-c",
            str(config),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/healthz", timeout=1.0, trust_env=False)
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp / "error.log").read_text()
                time.sleep(0.1)
        yield url
    finally:
        stop_process(process)


def test_readers_get_the_letter_page_from_the_shared_cache(
    database_url, letter, mailbox: Mailbox, tmp_path
):
    with (
        running_server(database_url, tmp_path, smtp_url=mailbox.url) as server,
        nginx_in_front(server.url, tmp_path) as proxy,
        http_client(proxy) as client,
    ):
        shared = client.get("/letters/test-letter")
        assert shared.status_code == 302  # to the reader's language; never kept
        assert shared.headers["x-cache-status"] != "HIT"
        readers = 20
        pages = [client.get(shared.headers["location"]) for _ in range(readers)]
        assert {page.status_code for page in pages} == {200}
        assert len({page.content for page in pages}) == 1
        statuses = [page.headers["x-cache-status"] for page in pages]
        assert "HIT" in statuses
        reached = server.log().count('"GET /en/letters/test-letter HTTP/1.0" 200')
        assert reached == readers - statuses.count("HIT") < readers

        # A signer, through the same cache: the form posts without a token from a browser
        # that says it is on this site, and the app itself answers the confirmation.
        signed = client.post(
            "/letters/test-letter/sign",
            data={"email": "ada@microsoft.com", "show_name": "0"},
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        assert signed.status_code == 303, signed.text
        mailbox.wait_for(1, timeout=10)
        token = mailbox.last_token()
        confirm = client.get(f"/verify/{token}")
        assert confirm.headers["x-cache-status"] != "HIT"
        done = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(confirm.text)})
        assert done.status_code == 200
        assert done.headers.get("x-cache-status") is None  # a POST: never from the cache
        assert "your signature is verified" in done.text
        assert re.search(r"now has\s+<strong>1</strong>\s+verified signature\.", done.text)
