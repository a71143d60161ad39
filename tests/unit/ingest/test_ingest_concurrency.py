"""Concurrent ingestions of one new customer never create two profiles (spec §1.6, DESIGN
"Scale"): on PostgreSQL from separate OS processes, each with its own engine."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.backends import postgres_schema_url

from openprofiles.app import build_services
from openprofiles.ingest.pipeline import ingest_object
from openprofiles.settings import Settings
from openprofiles.store.schema import profile, profile_object

from .conftest import DOMAIN, crm_type, make_domain, put_type

WORKERS = 6
OBJECTS_PER_WORKER = 5


def _worker(settings: Settings, worker: int, barrier: Any, results: Any) -> None:
    services = build_services(settings, migrate=False)
    try:
        barrier.wait(timeout=60)
        for n in range(OBJECTS_PER_WORKER):
            obj = {"id": f"w{worker}-{n}", "email": "new.customer@example.com", "first": "New"}
            with services.write() as tx:
                result = ingest_object(
                    tx, domain_name=DOMAIN, object_type_name="Crm", source=obj, raw=json.dumps(obj)
                )
            results.put(result.profile_id)
    finally:
        services.database.dispose()


@pytest.mark.postgres
def test_processes_ingesting_one_new_customer_create_one_profile(tmp_path: Path) -> None:
    with postgres_schema_url() as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        services = build_services(settings)
        try:
            make_domain(services)
            put_type(services, "Crm", crm_type())
            context = multiprocessing.get_context("spawn")
            barrier = context.Barrier(WORKERS)
            results = context.Queue()
            processes = [
                context.Process(target=_worker, args=(settings, i, barrier, results))
                for i in range(WORKERS)
            ]
            for process in processes:
                process.start()
            ids = [results.get(timeout=120) for _ in range(WORKERS * OBJECTS_PER_WORKER)]
            for process in processes:
                process.join(timeout=60)
                assert process.exitcode == 0
            assert len(set(ids)) == 1
            with services.read() as tx:
                assert tx.conn.execute(select(func.count()).select_from(profile)).scalar() == 1
                stored = tx.conn.execute(select(func.count()).select_from(profile_object))
                assert stored.scalar() == WORKERS * OBJECTS_PER_WORKER
        finally:
            services.database.dispose()
