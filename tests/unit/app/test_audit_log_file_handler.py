"""The audit log's file handler (logging_setup.AuditFileHandler) and its setting
(OPENPROFILES_AUDIT_LOG): only the audit logger's records, each line the UTC time, the process
id and the audit text, one write each with O_APPEND (several processes at once), created
owner-only, opened again after logrotate moved it, and a line that cannot be written said on
stderr with the line; the server's logging configuration adds the file and keeps stderr as it
was. The end-to-end runs (the command, a live server) are in tests/cli/test_audit_log_file.py."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openprofiles import audit, logging_setup, serving
from openprofiles.settings import Settings

LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) pid=(\d+) (.+)")
DOMAIN_LINE = "cli dlq purge uid=7 domain=acme result=ok"


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[logging_setup.AuditFileHandler]:
    """A handler on the root logger (where it gets every record), removed after the test."""
    made = logging_setup.AuditFileHandler(tmp_path / "audit.log")
    root = logging.getLogger()
    root.addHandler(made)
    try:
        yield made
    finally:
        root.removeHandler(made)
        made.close()


def _texts(path: Path) -> list[str]:
    found = []
    for line in path.read_text().splitlines():
        match = LINE.fullmatch(line)
        assert match, f"not an audit log line: {line!r}"
        found.append(match[3])
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_setting_defaults_to_the_data_dir_and_off_turns_it_off(tmp_path: Path) -> None:
    data_dir = {"OPENPROFILES_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(data_dir).audit_log_file == tmp_path / "audit.log"
    for off in ("off", "OFF", "Off"):
        assert Settings.from_env({**data_dir, "OPENPROFILES_AUDIT_LOG": off}).audit_log_file is None
    own = tmp_path / "logs" / "trail.log"
    assert Settings.from_env({"OPENPROFILES_AUDIT_LOG": str(own)}).audit_log_file == own


def test_only_audit_records_with_utc_time_and_process_id(
    handler: logging_setup.AuditFileHandler, tmp_path: Path
) -> None:
    logging.getLogger("openprofiles.audit").warning("api CreateDomain domain=acme")
    logging.getLogger("openprofiles.wire").warning("a request failed")
    logging.getLogger("somelibrary").error("not an audit line")
    logging.getLogger("openprofiles.audit").debug("below INFO")
    text = (tmp_path / "audit.log").read_text()
    match = LINE.fullmatch(text.rstrip("\n"))
    assert match, text
    assert (int(match[2]), match[3]) == (os.getpid(), "api CreateDomain domain=acme")
    written = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - written) < timedelta(minutes=5)


@pytest.mark.usefixtures("umask_022")
def test_created_owner_only_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    for _ in range(2):
        made = logging_setup.AuditFileHandler(path)
        with logging_setup.audit_to(made):
            audit.cli_command("dlq purge", uid=7, domain_name="acme", result="ok", error=None)
    assert _mode(path) == 0o600
    assert _texts(path) == [DOMAIN_LINE, DOMAIN_LINE]


def test_a_command_s_file_is_there_only_while_it_runs(tmp_path: Path) -> None:
    """A command's root logger stops at WARNING: `audit_to` lets the audit logger's INFO
    records through for the block, and puts everything back after it."""
    audit_logger = logging.getLogger("openprofiles.audit")
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.WARNING)
    try:
        assert audit_logger.level == logging.NOTSET
        path = tmp_path / "audit.log"
        with logging_setup.audit_to(logging_setup.AuditFileHandler(path)):
            audit.cli_command("dlq purge", uid=7, domain_name="acme", result="ok", error=None)
        audit.cli_command("dlq purge", uid=7, domain_name="acme", result="ok", error=None)
        assert _texts(path) == [DOMAIN_LINE]
        assert audit_logger.level == logging.NOTSET
        assert not any(isinstance(h, logging_setup.AuditFileHandler) for h in audit_logger.handlers)
    finally:
        root.setLevel(previous)


@pytest.mark.usefixtures("umask_022")
def test_opened_again_when_logrotate_moves_it(
    handler: logging_setup.AuditFileHandler, tmp_path: Path
) -> None:
    path = tmp_path / "audit.log"
    logging.getLogger("openprofiles.audit").warning("before the rotation")
    path.rename(tmp_path / "audit.log.1")
    logging.getLogger("openprofiles.audit").warning("after the rotation")
    assert _texts(tmp_path / "audit.log.1") == ["before the rotation"]
    assert _texts(path) == ["after the rotation"]
    assert _mode(path) == 0o600


def test_processes_writing_at_once_append_whole_lines(tmp_path: Path) -> None:
    """Each line one write to a descriptor opened with O_APPEND: none is lost to another
    process's position in the file, none is cut into by another's line."""
    path = tmp_path / "audit.log"
    lines = 400
    script = textwrap.dedent(
        f"""
        import logging, sys
        from openprofiles import logging_setup
        audit = logging.getLogger("openprofiles.audit")
        audit.addHandler(logging_setup.AuditFileHandler({str(path)!r}))
        audit.setLevel(logging.INFO)
        for number in range({lines}):
            audit.info("writer=%s line=%d %s", sys.argv[1], number, "x" * 300)
        """
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], stderr=subprocess.PIPE)
        for n in range(4)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    texts = _texts(path)
    assert sorted(texts) == sorted(
        f"writer={n} line={number} {'x' * 300}" for n in range(4) for number in range(lines)
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_line_that_cannot_be_written_is_said_on_stderr_with_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """/dev/full opens and refuses every write (ENOSPC), as a full disk would."""
    with logging_setup.audit_to(logging_setup.AuditFileHandler("/dev/full")):
        audit.cli_command("dlq purge", uid=7, domain_name="acme", result="ok", error=None)
    assert capsys.readouterr().err == (
        "Warning: could not append an audit line to /dev/full: No space left on device. "
        f"The line: {DOMAIN_LINE}\n"
    )


def test_the_server_s_configuration_adds_the_file_and_keeps_stderr(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    script = textwrap.dedent(
        f"""
        import logging, logging.config
        from openprofiles import logging_setup
        logging_setup.install()
        logging.config.dictConfig(logging_setup.serving_log_config({str(path)!r}))
        logging.getLogger("openprofiles.audit").info("api CreateDomain domain=acme")
        logging.getLogger("openprofiles.objects.expiry").info("purged 3")
        logging.getLogger("somelibrary").warning("a warning")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert _texts(path) == ["api CreateDomain domain=acme"]
    shown = [line.split(" ", 2)[2] for line in result.stderr.splitlines()]
    assert shown == [
        "INFO openprofiles.audit: api CreateDomain domain=acme",
        "INFO openprofiles.objects.expiry: purged 3",
        "WARNING somelibrary: a warning",
    ]


def test_serve_warns_about_an_audit_log_others_may_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    restored = data_dir / "audit.log"
    restored.write_text("")
    restored.chmod(0o644)
    assert serving.loose_permissions(Settings(data_dir=data_dir)) == [
        f"The audit log {restored} is open to other users (mode 644), and it says which access "
        f"keys and users changed which domains and profiles. Make it the owner's only: chmod 600 "
        f"{restored}"
    ]
    assert serving.loose_permissions(Settings(data_dir=data_dir, audit_log="off")) == []


def test_a_symbolic_link_at_the_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """Opened through a link, the trail was appended to whatever file the link named (one
    anyone who may write the folder could plant), or a dangling link's target was made."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    path = tmp_path / "audit.log"
    path.symlink_to(victim)
    with pytest.raises(OSError):
        logging_setup.AuditFileHandler(path)
    assert victim.read_text() == "precious\n"
    dangling = tmp_path / "dangling.log"
    dangling.symlink_to(tmp_path / "made-by-the-link")
    with pytest.raises(OSError):
        logging_setup.AuditFileHandler(dangling)
    assert not (tmp_path / "made-by-the-link").exists()


def test_a_file_that_was_there_is_made_owner_only(tmp_path: Path) -> None:
    """A file made beforehand (logrotate's `create 0644`, a `touch`) kept its mode, and the
    trail was readable by every user."""
    path = tmp_path / "audit.log"
    path.write_text("")
    path.chmod(0o644)
    made = logging_setup.AuditFileHandler(path)
    made.close()
    assert _mode(path) == 0o600


def test_a_file_attached_already_gets_each_line_once(tmp_path: Path) -> None:
    """A command run inside a program whose logging attached the same file (the server's, in
    this process) wrote each of its lines twice."""
    path = tmp_path / "audit.log"
    attached = logging_setup.AuditFileHandler(path)
    audit_logger = logging.getLogger(logging_setup.AUDIT_LOGGER)
    audit_logger.addHandler(attached)
    try:
        with logging_setup.audit_to(logging_setup.AuditFileHandler(path)):
            audit.cli_command("users list", uid=0, domain_name=None, result="ok", error=None)
    finally:
        audit_logger.removeHandler(attached)
        attached.close()
    assert len(_texts(path)) == 1


def test_a_short_write_leaves_no_part_line_for_the_next_line_to_be_glued_onto(
    tmp_path: Path,
) -> None:
    """A real short write: the process's file size limit (RLIMIT_FSIZE, as a full disk would)
    lets only the first bytes of a line through, then none; once there is room again, the next
    line is a line of its own and every line in the file is whole (the part line was glued to
    the next one: `...22.6831832026-11-30T18:40:23.094121Z pid=...`)."""
    path = tmp_path / "audit.log"
    script = textwrap.dedent(
        f"""
        import logging, os, resource, signal
        from openprofiles import logging_setup
        # Past the limit the kernel sends SIGXFSZ, which would end the process: ignored, the
        # write is short or fails with EFBIG instead.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        audit = logging.getLogger("openprofiles.audit")
        audit.addHandler(logging_setup.AuditFileHandler({str(path)!r}))
        audit.setLevel(logging.INFO)
        audit.info("cli first line=1")
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize({str(path)!r}) + 20, hard))
        audit.info("cli cut short line=2 %s", "x" * 100)
        audit.info("cli cut short line=3 %s", "y" * 100)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
        audit.info("cli after line=4")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert _texts(path) == ["cli first line=1", "cli after line=4"]
    warnings = run.stderr.splitlines()
    assert len(warnings) == 2, run.stderr
    assert all("could not append an audit line" in w for w in warnings)
    assert "line=2" in warnings[0] and "line=3" in warnings[1]
