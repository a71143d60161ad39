"""A sealed search address opens only for the user who searched (agent_pages._search_scope): a
copy of it (another agent's browser history, a proxy's log, a shared screen) answers another
user as an address too old does, and says nothing of what was searched. The same user, in a
new session (after an hour idle, signing in again), still goes back to it. An old `?q=`
address is sent on to the sealed one, for its user too.

Sealed addresses used to be bound to their domain only, and opened for any signed-in agent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_private_urls import (
    EMAIL,
    PASSWORD,
    agent,  # noqa: F401  (the fixture: ana signed in, acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    hidden_value,
    link_named,
    post_search,
    result_count,
    sign_in,
)

from openprofiles.ui.agent_pages import INVALID_SEARCH
from openprofiles.users import service as users


@pytest.fixture
def other_agent(agent: TestClient) -> Iterator[TestClient]:  # noqa: F811
    """Another agent (ben), signed in in a browser of their own, to the same server."""
    with agent.app.state.services.write() as tx:  # type: ignore[attr-defined]
        users.create_user(tx, username="ben", password=PASSWORD, role="agent")
    with TestClient(agent.app, follow_redirects=False) as client:
        sign_in(client, "ben")
        yield client


def assert_expired_search(client: TestClient, url: str) -> None:
    """`url` answered as a search address too old (or changed) is: 400, "Search again", and no
    trace of the search."""
    response = client.get(url)
    assert response.status_code == 400, url
    assert INVALID_SEARCH in response.text, url
    assert result_count(response.text) == 0
    assert EMAIL.lower() not in response.text.lower()
    assert "Garcia" not in response.text


def test_a_search_address_opens_only_for_the_agent_who_searched(
    agent: TestClient,  # noqa: F811
    other_agent: TestClient,
) -> None:
    results = post_search(agent, "acme", EMAIL)
    first = agent.get(results)
    assert result_count(first.text) == 20
    following = [
        results,
        link_named(first.text, "Next page"),
    ]
    second = agent.get(following[1])
    assert result_count(second.text) == 1
    following.append(link_named(second.text, "Previous page"))
    for url in following:
        assert_expired_search(other_agent, url)
        assert agent.get(url).status_code == 200, url
    # Nor does it fill in another's creation form.
    nothing = agent.get(post_search(agent, "acme", "kofi.mensah@example.com"))
    creation = link_named(nothing.text, "create a profile")
    refused = other_agent.get(creation)
    assert refused.status_code == 400
    assert INVALID_SEARCH in refused.text and "kofi" not in refused.text.lower()
    assert "kofi.mensah@example.com" in agent.get(creation).text


def test_the_agent_who_searched_goes_back_to_it_after_signing_in_again(
    agent: TestClient,  # noqa: F811
    other_agent: TestClient,
) -> None:
    """A session ends after an hour idle; signing in again from the search page brings the agent
    back to their search. Someone else signing in on that sign-in page does not see it."""
    results = post_search(agent, "acme", EMAIL)
    for username, client, expected in (("ana", agent, 20), ("ben", other_agent, 0)):
        client.cookies.clear()
        sign_in_page = client.get(client.get(results).headers["location"])
        returned = sign_in(
            client,
            username,
            next=hidden_value(sign_in_page.text, "next"),
            next_query=hidden_value(sign_in_page.text, "next_query"),
        )
        assert returned == results
        if expected:
            assert result_count(client.get(returned).text) == expected
        else:
            assert_expired_search(client, returned)


def test_an_old_plain_search_address_is_sent_on_sealed_for_its_agent(
    agent: TestClient,  # noqa: F811
    other_agent: TestClient,
) -> None:
    response = agent.get("/agent/domains/acme", params={"q": EMAIL, "key": "_email"})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/agent/domains/acme?s=")
    assert EMAIL not in location and "maria" not in location.lower()
    page = agent.get(location)
    assert result_count(page.text) == 20
    assert '<option value="_email" selected>' in page.text
    assert_expired_search(other_agent, location)
