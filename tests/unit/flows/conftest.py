"""Fixtures of the flows tests: the shared settings with the test's temporary directory as the
one folder flows may read (`flow_folder_roots`), so folder sources can live in `tmp_path`, and
no settle time (the tests write a file and run its flow at once; test_flows_settling keeps the
default)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from openprofiles.settings import Settings


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        settings, flow_folder_roots=(tmp_path,), flow_folder_settle_seconds=0
    )
