"""Fixtures of the CLI tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def logging_as_it_was() -> Iterator[None]:
    """`serve` run in the test's process sets OpenProfiles' loggers to INFO and adds a stderr
    handler: undone after the test."""
    logger = logging.getLogger("openprofiles")
    level, handlers = logger.level, list(logging.getLogger().handlers)
    yield
    logger.setLevel(level)
    for handler in logging.getLogger().handlers:
        if handler not in handlers:
            logging.getLogger().removeHandler(handler)
