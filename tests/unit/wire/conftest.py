"""Fixtures of the wire-layer unit tests."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.wire.helpers import Capture, make_client

from openprofiles.wire.model import load_service_model


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def client(capture: Capture) -> Any:
    return make_client(capture)


@pytest.fixture(scope="session")
def service_model() -> Any:
    return load_service_model()
