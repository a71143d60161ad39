"""ListIntegrations pages through Uris as long as the model allows (255 characters) in any
script, through a real boto3 client against a live server (both backends): its NextToken
carries the last Uri of a page (wire.pagination), and stays within the model's 1,024
characters however that Uri is written."""

from __future__ import annotations

import uuid

from openprofiles.wire.pagination import MAX_TOKEN_LENGTH

URI_MAX = 255  # the model's max for PutIntegration's Uri (string1To255)
BUCKET = "arn:aws:s3:::my-bucket/"


def _uris() -> list[str]:
    fill = URI_MAX - len(BUCKET)
    return [
        # The reviewer's: a Uri with many 3-byte characters, then the model's worst cases: the
        # longest Uri of 2-, 3- and 4-byte characters, of control characters (JSON escapes
        # each as 6), of characters JSON escapes as 2, and of ASCII.
        BUCKET + "顧客データ" * 25,
        BUCKET + "é" * fill,
        BUCKET + "顧" * fill,
        "顧" * URI_MAX,
        BUCKET + "\U0001f600" * fill,
        "\U0010fffd" * URI_MAX,
        BUCKET + "\x01" * fill,
        BUCKET + '"\\' * (fill // 2),
        BUCKET + "a" * fill,
        BUCKET + "a" * (fill - 1) + "b",
        BUCKET + "short",
    ]


def _pages(client, domain: str, size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    kwargs = {"DomainName": domain, "MaxResults": size}
    while True:
        answer = client.list_integrations(**kwargs)
        pages.append([item["Uri"] for item in answer["Items"]])
        token = answer.get("NextToken")
        if token is None:
            return pages
        assert len(token) <= MAX_TOKEN_LENGTH
        kwargs["NextToken"] = token


def test_list_integrations_pages_through_the_longest_uris(live_server):
    client = live_server.client()
    domain = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    uris = _uris()
    for uri in uris:
        client.put_integration(DomainName=domain, Uri=uri, ObjectTypeName="CTR")
    whole = client.list_integrations(DomainName=domain, MaxResults=100)
    assert "NextToken" not in whole
    in_order = [item["Uri"] for item in whole["Items"]]
    assert sorted(in_order) == sorted(uris)
    # Every Uri ends a page with 1 a page, and most with 2 or 3: each is a NextToken's cursor.
    for size in (1, 2, 3):
        pages = _pages(client, domain, size)
        assert [uri for page in pages for uri in page] == in_order, size
        assert all(len(page) == size for page in pages[:-1])
