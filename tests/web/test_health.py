"""Liveness (`/healthz`) and readiness (`/readyz`): only readiness needs the database."""

from __future__ import annotations

from starlette.testclient import TestClient

from letters.app import create_app
from tests.conftest import free_port, make_settings


def test_ready_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/healthz").status_code == 200


def test_not_ready_but_alive_while_the_database_is_unreachable(tmp_path):
    # Nothing listens on this port: every connection is refused, as when the server is down.
    url = f"postgresql://letters@127.0.0.1:{free_port()}/letters"
    app = create_app(make_settings(url, instance_path=tmp_path, mail_in_app=False))
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "database": "unreachable"}
        assert response.headers["retry-after"] == "5"
        assert response.headers["cache-control"] == "no-store"
        alive = client.get("/healthz")
        assert alive.status_code == 200 and alive.json() == {"status": "ok"}
