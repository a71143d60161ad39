"""`openprofiles connectors kinesis --stream NAME|ARN`: apply contact records from a stream."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from openprofiles.cli_support import (
    Refused,
    caused_by_ctrl_c,
    http_url,
    open_services,
    settings_from_options,
    storage_options,
)


def _stream(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A stream's name, or its ARN: one that is not a Kinesis stream's (an empty name, one
    Kinesis would refuse) is a usage error (exit status 2) before anything starts, saying what
    is wrong with it."""
    from openprofiles.connectors.kinesis import StreamInvalid, check_stream

    try:
        check_stream(value)
    except StreamInvalid as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


@click.group()
def connectors() -> None:
    """Long-running connectors that bring records in from streams."""


@connectors.command("kinesis")
@storage_options
@click.option(
    "--stream",
    "stream",
    required=True,
    callback=_stream,
    help="The Kinesis stream's name (read in OPENPROFILES_AWS_REGION, else OPENPROFILES_REGION), "
    "or its ARN, arn:aws:kinesis:REGION:ACCOUNT:stream/NAME (read in REGION).",
)
@click.option(
    "--endpoint-url",
    default=None,
    callback=http_url,
    help="Kinesis endpoint URL (default: OPENPROFILES_KINESIS_ENDPOINT_URL, else AWS's).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Poll every shard once and exit (status 1 if a Kinesis call or the database failed).",
)
def connectors_kinesis(
    data_dir: Path | None,
    database_url: str | None,
    stream: str,
    endpoint_url: str | None,
    once: bool,
) -> None:
    """Read contact records from the stream (resuming after the last checkpoint) until Ctrl-C
    (or SIGTERM: systemd's and Kubernetes' way to stop it), which ends it with status 0. A
    stream named by its ARN is read in the ARN's region.

    A failed read (a throttled shard, the stream out of reach) does not stop it: the shard
    waits, longer with each failure in a row, and the others go on. Nor does the database
    failing a poll for a while (out of reach, locked): the next one waits, and reads on from
    the checkpoints. A database error that waiting will not mend (a missing table) stops it,
    saying so, with exit status 1."""
    from openprofiles.connectors.kinesis import (
        DATABASE_ERRORS,
        KinesisContactRecords,
        database_failure,
    )

    services = open_services(
        settings_from_options(data_dir, database_url, kinesis_endpoint_url=endpoint_url)
    )
    connector = KinesisContactRecords(services, stream)
    stop = threading.Event()
    try:
        if once:
            try:
                result = connector.poll_once()
            except DATABASE_ERRORS as exc:
                if caused_by_ctrl_c(exc):
                    raise
                # The types only, as `run` logs them: the message can quote the values sent.
                raise Refused(database_failure(exc), error="DatabaseFailed") from None
            click.echo(
                f"{result.stream_records} stream records: {result.accepted} contact records "
                f"accepted, {result.rejected} rejected ({result.held} of them held until their "
                f"domain can take them); {result.replayed} held records sent on."
            )
            if result.failed:
                # Each failure was logged (the call and AWS's error code) as it happened.
                raise Refused(
                    f"{result.failed} Kinesis calls failed (see the warnings above); what they "
                    "would have read is read at the next run.",
                    error="KinesisCallsFailed",
                )
        else:
            click.echo(f"Reading contact records from {stream} (Ctrl-C stops).")
            try:
                connector.run(stop)
            except DATABASE_ERRORS as exc:
                if caused_by_ctrl_c(exc):
                    raise
                # Only what waiting will not mend gets here (`run` waits out the rest), logged
                # with its traceback; the command says why it stopped.
                raise Refused(f"Stopped. {database_failure(exc)}", error="DatabaseFailed") from None
    except BaseException as exc:
        # Ctrl-C, or SIGTERM (cli_support.sigterm_as_ctrl_c) — or a database driver's error it
        # caused, when it came inside the driver's call (the pool's ping of a connection).
        if not caused_by_ctrl_c(exc):
            raise
        stop.set()
        # A batch and its checkpoint commit together: one cut short was rolled back whole.
        click.echo(
            f"Stopped. Every batch applied from {stream} is committed with its checkpoint; "
            "the next run reads on from there."
        )
    finally:
        services.database.dispose()
