"""Where the requests about an SQS queue go, and the region they are signed for, from its URL.

An AWS queue URL names its region in its host (https://sqs.eu-west-1.amazonaws.com/ACCOUNT/NAME,
or the older https://eu-west-1.queue.amazonaws.com/...): requests about it must go to that
region's endpoint, signed for that region, whatever region the server runs in. A queue of an
SQS-compatible server (http://host:port/ACCOUNT/NAME) is asked at its own host, in the server's
region. OPENPROFILES_SQS_ENDPOINT_URL, when set, is where every request goes (a VPC endpoint, a
local emulator). The CreateDomain check (domains.setup) and the sends (dlq.sinks) both ask here,
so a queue the check accepted is the queue the sends reach.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from openprofiles.settings import Settings

# sqs.REGION.amazonaws.com (and .com.cn), sqs-fips.REGION.amazonaws.com, the older
# REGION.queue.amazonaws.com, and the oldest, queue.amazonaws.com, which is us-east-1.
AWS_QUEUE_HOST = re.compile(
    r"^(?:sqs(?:-fips)?\.(?P<region>[a-z0-9-]+)|(?P<older>[a-z0-9-]+)\.queue|queue)"
    r"\.amazonaws\.com(?:\.cn)?$"
)
OLDEST_QUEUE_REGION = "us-east-1"


def aws_queue_region(queue_url: str) -> str | None:
    """The region an AWS queue URL's host names; None for another host."""
    found = AWS_QUEUE_HOST.match(urlsplit(queue_url.strip()).hostname or "")
    if found is None:
        return None
    return found["region"] or found["older"] or OLDEST_QUEUE_REGION


def queue_target(settings: Settings, queue_url: str) -> tuple[str | None, str]:
    """(endpoint URL, or None for AWS's own endpoint of the region; region) of the queue."""
    region = aws_queue_region(queue_url)
    parts = urlsplit(queue_url.strip())
    endpoint = settings.sqs_endpoint_url
    # A FIPS queue is asked at its FIPS host, which botocore would not pick by itself.
    if endpoint is None and (region is None or parts.netloc.startswith("sqs-fips.")):
        endpoint = f"{parts.scheme}://{parts.netloc}"
    return endpoint, region or settings.aws_region or settings.region
