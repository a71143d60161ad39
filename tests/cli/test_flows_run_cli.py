"""What `openprofiles flows run` prints of a failed run: the reason, which may name the source's
folder or bucket for the operator, but never credentials — botocore's connection errors quote
the endpoint URL, user-info included, and the run's error (also shown to the domain's admins)
quoted botocore."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tests.unit.flows.test_flows_templates import D, flow_definition, put_flow
from tests.unit.ingest.conftest import crm_type, put_type
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.flows.runs import list_runs
from openprofiles.settings import Settings

# Nothing listens there (a port of this helper's range): the connection is refused at once.
ENDPOINT = "http://flows-user:s3cr3t-pa55@127.0.0.1:8611"


def test_a_failed_run_names_the_bucket_but_not_the_endpoints_credentials(
    sqlite_settings: Settings,
) -> None:
    services = build_services(sqlite_settings)
    try:
        make_domain(services, D)
        put_type(services, "Crm", crm_type(), domain=D)
        put_flow(services, "crm", "Crm", flow_definition("crm", "exports", "kim.lee"))
    finally:
        services.database.dispose()
    env = {
        "OPENPROFILES_S3_ENDPOINT_URL": ENDPOINT,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    }
    options = ["--domain", D, "--data-dir", str(sqlite_settings.data_dir)]

    text = CliRunner().invoke(main, ["flows", "run", "crm", *options], env=env)
    as_json = CliRunner().invoke(main, ["flows", "run", "crm", *options, "--json"], env=env)

    assert text.exit_code == 1 and as_json.exit_code == 1
    assert "Error: Cannot list s3://exports/kim.lee: Could not connect to the endpoint URL" in (
        text.output
    )
    assert '"http://127.0.0.1:8611/exports?' in text.output
    error = json.loads(as_json.output)["Error"]
    assert error.startswith("Cannot list s3://exports/kim.lee: ")
    for output in (text.output, as_json.output):
        assert "s3cr3t" not in output and "flows-user" not in output
    # The run as stored (the admin pages show it) says the same.
    services = build_services(sqlite_settings)
    try:
        with services.read() as tx:
            runs = list_runs(tx, domain_name=D, flow_name="crm")
    finally:
        services.database.dispose()
    assert [run.error for run in runs] == [error, error]
