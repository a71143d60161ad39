"""Loads the Customer Profiles service model from the installed botocore.

The model is read at run time, never copied into the repository, so the API surface follows
the botocore version that is installed.
"""

from __future__ import annotations

import functools

import botocore.loaders
from botocore.model import ServiceModel

SERVICE_NAME = "customer-profiles"
API_VERSION = "2020-08-15"


@functools.cache
def load_service_model() -> ServiceModel:
    """Return the (cached) botocore model of Customer Profiles, API 2020-08-15."""
    loader = botocore.loaders.create_loader()
    data = loader.load_service_model(SERVICE_NAME, "service-2", API_VERSION)
    return ServiceModel(data, service_name=SERVICE_NAME)
