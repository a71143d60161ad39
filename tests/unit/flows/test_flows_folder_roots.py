"""Folder sources read only under the configured roots (settings.flow_folder_roots): checked
with symlinks followed on PutIntegration (BadRequest naming the roots) and again when the flow
runs (a link changed since, roots narrowed: the run fails; a file linking out: that file is a
failed item)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.flows.service import run_flow
from openprofiles.settings import Settings

from .test_flows_templates import D, flow_definition, put_flow

OUTSIDE = "outside the folders flows may read"


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a record, not under the test's root (tmp_path)."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.jsonl").write_text(json.dumps({"Id": "1", "email": "s@x.com"}) + "\n")
    return folder


def test_a_folder_outside_the_roots_is_refused(
    services: Services, tmp_path: Path, outside: Path
) -> None:
    make_domain(services, D)
    for folder in ("/etc", str(outside), f"{tmp_path}/../{outside.name}"):
        with pytest.raises(BadRequest, match=OUTSIDE) as exc:
            put_flow(services, "x", "Zendesk-users", flow_definition("x", "file://", folder))
        assert str(tmp_path.resolve()) in exc.value.message
    # A link under the root to a folder outside it is followed, and refused.
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadRequest, match=OUTSIDE):
        put_flow(
            services, "x", "Zendesk-users", flow_definition("x", "file://", f"{tmp_path}/link")
        )
    # The same path given through BucketName alone.
    with pytest.raises(BadRequest, match=OUTSIDE):
        put_flow(services, "x", "Zendesk-users", flow_definition("x", f"file://{outside}"))


def test_a_run_checks_the_folder_again(services: Services, tmp_path: Path, outside: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    put_flow(services, "x", "Zendesk-users", flow_definition("x", "file://", str(folder)))
    # A file of the folder linking out of the roots is a failed item (test_flows_folder_entries):
    # nothing of it is read.
    (folder / "a.jsonl").symlink_to(outside / "secret.jsonl")
    run = run_flow(services, domain_name=D, flow_name="x")
    assert run.status == "COMPLETED" and run.error is None
    assert (run.records_read, run.records_ingested, run.records_dead_lettered) == (1, 0, 1)
    # The folder itself replaced by a link out of the roots after the flow was defined.
    (folder / "a.jsonl").unlink()
    folder.rmdir()
    folder.symlink_to(outside, target_is_directory=True)
    run = run_flow(services, domain_name=D, flow_name="x")
    assert run.status == "FAILED" and OUTSIDE in (run.error or "")
    assert run.records_read == 0


def test_roots_narrowed_after_the_flow_was_defined(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"id": "1"}) + "\n")
    put_flow(services, "x", "Zendesk-users", flow_definition("x", "file://", str(folder)))
    narrowed = build_services(dataclasses.replace(settings, flow_folder_roots=None))
    try:
        run = run_flow(narrowed, domain_name=D, flow_name="x")
    finally:
        narrowed.database.dispose()
    assert run.status == "FAILED" and str(settings.data_dir / "flows") in (run.error or "")


def test_default_root_and_environment(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).effective_flow_folder_roots == (tmp_path / "flows",)
    env = {"OPENPROFILES_FLOW_FOLDER_ROOTS": f"/srv/a{os.pathsep}/srv/b"}
    assert Settings.from_env(env).effective_flow_folder_roots == (Path("/srv/a"), Path("/srv/b"))
    assert Settings.from_env({}).flow_folder_roots is None
