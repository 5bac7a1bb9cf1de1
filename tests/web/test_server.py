"""The signing flow against a really running `letters serve`, over real HTTP and SMTP.

The server runs in a subprocess with its settings in the environment, as in production
(see tests/live.py); its output is kept in a file so the test can check what it logged.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import LINK, Mailbox
from tests.helpers import csrf_from, letter_csrf
from tests.live import Server, http_client, running_server, wait_for_log

HIDDEN_NAME = "Zebulon Hiddenname"
HIDDEN_EMAIL = "zebulon.private@microsoft.com"


def assert_stopped_gracefully(server: Server, log: str, workers: int) -> None:
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert server.process.returncode in (0, -signal.SIGTERM), log
    assert log.count("Application shutdown complete.") == workers, log


def token_in(mailbox: Mailbox, index: int) -> str:
    match = LINK.search(mailbox.text_of(mailbox.messages[index]))
    assert match, "no link in the email"
    return match.group(1)


def test_sign_and_confirm_through_a_running_server(database_url, letter, mailbox, tmp_path):
    with (
        running_server(database_url, tmp_path, smtp_url=mailbox.url) as server,
        http_client(server.url) as client,
    ):
        shared = client.get("/letters/test-letter")  # the address in emails and QR codes
        assert shared.status_code == 302
        page = client.get(shared.headers["location"])
        assert page.status_code == 200
        assert "Test letter" in page.text
        assert "csrftoken" not in client.cookies  # the page is the same for every reader

        response = client.post(
            "/letters/test-letter/sign",
            data={
                "csrftoken": letter_csrf(client),
                "email": HIDDEN_EMAIL,
                "name": HIDDEN_NAME,
                "title": "",
                "show_name": "0",
            },
        )
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.endswith("/letters/test-letter/check-email")
        check = client.get(location)
        assert check.status_code == 200
        assert "Check your work email" in check.text

        mailbox.wait_for(1, timeout=10)
        message = mailbox.messages[0]
        assert message["To"] == HIDDEN_EMAIL
        assert message["Subject"] == "Confirm your email address"
        text = mailbox.text_of(message)
        assert f"{server.url}/verify/" in text  # the link points at this server (BASE_URL)
        token = token_in(mailbox, 0)

        confirm_page = client.get(f"/verify/{token}")
        assert confirm_page.status_code == 200
        assert "Confirm my signature" in confirm_page.text
        assert confirm_page.headers["cache-control"] == "no-store"
        assert confirm_page.headers["referrer-policy"] == "no-referrer"
        detail = client.get("/api/letters/test-letter").json()
        assert detail["verified_count"] == 0  # opening the link (a mail scanner) counts nothing

        done = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(confirm_page.text)})
        assert done.status_code == 200, done.text
        assert "your signature is verified" in done.text

        detail = client.get("/api/letters/test-letter").json()
        assert (detail["verified_count"], detail["named_count"], detail["hidden_count"]) == (
            1,
            0,
            1,
        )
        assert detail["organizations"] == [{"name": "Microsoft", "count": 1}]

        reloaded = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(confirm_page.text)})
        assert reloaded.status_code == 200 and "Your signature is counted" in reloaded.text
        client.cookies.delete("confirmed")  # another browser (someone reading the mailbox)
        again = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(confirm_page.text)})
        assert again.status_code == 400
        assert "already been used" in again.text
        assert "Test letter" not in again.text  # a used link does not say which letter
        assert client.get("/api/letters/test-letter").json()["verified_count"] == 1

        public = {
            path: client.get(path, follow_redirects=True)
            for path in [
                "/",
                "/letters/test-letter",
                "/letters/test-letter/signatures",
                "/letters/test-letter/check-email",
                "/api/letters",
                "/api/letters/test-letter",
                "/api/letters/test-letter/signatures",
            ]
        }
        public["confirm page"] = confirm_page
        public["confirmed page"] = done
        for path, page in public.items():
            assert page.status_code == 200, path
            for secret in (HIDDEN_NAME, "Zebulon", "Hiddenname", HIDDEN_EMAIL, "zebulon.private"):
                assert secret not in page.text, f"{secret!r} shown on {path}"
        assert client.get("/api/letters/test-letter/signatures").json()["signatures"] == []
        assert "1 verified employee who chose not to show" in public["/letters/test-letter"].text

    log = server.log()
    assert_stopped_gracefully(server, log, workers=1)
    assert "GET /verify/[redacted]" in log
    assert "POST /verify/[redacted]" in log
    assert "POST /letters/test-letter/sign" in log
    for secret in (token, token[:20], HIDDEN_EMAIL, "zebulon.private", HIDDEN_NAME, "Hiddenname"):
        assert secret not in log, f"{secret!r} in the server log"
    assert "127.0.0.1 - " not in log  # the access log names no client address
    assert "Traceback" not in log


def test_serve_with_two_workers_counts_exactly(database_url, letter, mailbox, tmp_path):
    people = [f"worker.{n}@{'github.com' if n % 3 == 0 else 'microsoft.com'}" for n in range(9)]
    with running_server(database_url, tmp_path, "--workers", "2", smtp_url=mailbox.url) as server:
        wait_for_log(server, "Application startup complete.", count=2)  # both workers up
        with http_client(server.url) as client:
            for index, email in enumerate(people):
                body = {"email": email, "name": f"Worker {index}", "show_name": index % 2 == 0}
                response = client.post("/api/letters/test-letter/signatures", json=body)
                assert response.status_code == 202, response.text
        mailbox.wait_for(len(people), timeout=10)
        tokens = [token_in(mailbox, index) for index in range(len(people))]

        # Every link twice, all at once, over separate connections spread across workers.
        def use(token: str) -> tuple[int, dict]:
            with http_client(server.url) as own:
                response = own.post("/api/verify", json={"token": token})
                return response.status_code, response.json()

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(use, tokens * 2, timeout=30))

        with http_client(server.url) as client:
            detail = client.get("/api/letters/test-letter").json()
            named = client.get("/api/letters/test-letter/signatures").json()["signatures"]

    ok = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status != 200]
    assert len(ok) == len(people)
    assert all(
        (body["status"], body["outcome"], body["letter"]) == ("verified", "verified", "test-letter")
        for body in ok
    )
    assert len({body["receipt"] for body in ok}) == len(people)
    assert len(refused) == len(people)
    assert all(body["error"]["code"] == "invalid_token" for body in refused)
    assert detail["verified_count"] == len(people)
    assert (detail["named_count"], detail["hidden_count"]) == (5, 4)
    assert sorted(detail["organizations"], key=lambda org: org["name"]) == [
        {"name": "GitHub", "count": 3},
        {"name": "Microsoft", "count": 6},
    ]
    assert sorted(row["name"] for row in named) == [f"Worker {n}" for n in (0, 2, 4, 6, 8)]
    log = server.log()
    assert_stopped_gracefully(server, log, workers=2)
    assert len(set(server.worker_pids())) == 2, log
    assert "Traceback" not in log
    for email in people:
        assert email not in log
    for token in tokens:
        assert token not in log
