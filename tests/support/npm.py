"""Small npm packages the tests use (tests/sdk/js: the AWS SDK for JavaScript; tests/browser/axe:
axe-core), installed as their package-lock.json pins them: `npm ci` into the package's
node_modules (git-ignored) when missing or older than the lock file, one install at a time on
the machine (pytest-xdist runs a session per worker). In CI a missing tool fails the run: a
skipped check is an unchecked one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NPM_TIMEOUT_SECONDS = 600
# Written into node_modules after `npm ci`: the digest of the lock file it installed.
STAMP = ".openprofiles-lock-sha256"


def missing(message: str, needed_by: str) -> None:
    """Skip, or in CI fail, for want of a tool `needed_by` needs."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI requires {needed_by}")
    pytest.skip(message)


def tool(name: str, needed_by: str, why: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is missing: {why}", needed_by)
    assert found is not None
    return found


@contextmanager
def _exclusive(name: str) -> Iterator[None]:
    path = Path(tempfile.gettempdir()) / name
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def npm_ci(package: Path, npm: str) -> Path:
    """The package's node_modules, installed as its lock file pins them."""
    digest = hashlib.sha256((package / "package-lock.json").read_bytes()).hexdigest()
    stamp = package / "node_modules" / STAMP
    path_digest = hashlib.sha256(str(package).encode()).hexdigest()[:12]
    with _exclusive(f"openprofiles-npm-ci-{path_digest}.lock"):
        if not stamp.exists() or stamp.read_text().strip() != digest:
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                    cwd=package,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT_SECONDS,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"npm ci in {package} took over {NPM_TIMEOUT_SECONDS} s")
            if done.returncode != 0:
                pytest.fail(
                    f"npm ci in {package} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
            stamp.write_text(digest + "\n")
    return package / "node_modules"
