"""GET /health answers what a load balancer needs (both backends): 200 while the database
answers, 503 once it does not — it used to answer 200 with the database refusing connections,
so a balancer kept sending requests that could only fail."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from tests.support.server import run_server

from openprofiles.settings import Settings


def test_health_follows_the_database(settings: Settings) -> None:
    with run_server(settings) as server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        # The database stops answering for what every request needs.
        with server.services.write() as tx:
            tx.conn.execute(text("ALTER TABLE domain RENAME TO domain_gone"))
        try:
            response = httpx.get(f"{server.url}/health")
            assert response.status_code == 503
            assert response.json() == {
                "status": "unavailable",
                "reason": "The database does not answer.",
            }
        finally:
            with server.services.write() as tx:
                tx.conn.execute(text("ALTER TABLE domain_gone RENAME TO domain"))
        assert httpx.get(f"{server.url}/health").status_code == 200
