"""`X-Content-Type-Options: nosniff` on every answer of the server that lacks it.

A browser that sniffs may run an answer as something other than what its Content-Type says:
an API answer or error echoing a caller's value (a profile's name, a path), or a static file,
read as HTML or script. The pages set it among their own security headers (ui.web
SECURITY_HEADERS), which are left exactly as they are: an answer that already has the header
is not touched. The one answer not made by the application, uvicorn's to a request whose HTTP
framing it could not read (wire.framing), adds `NOSNIFF` itself.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")


def nosniff(app: ASGIApp) -> ASGIApp:
    """`app` with NOSNIFF added to each HTTP answer that does not carry the header already."""

    async def with_nosniff(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(name.lower() == NOSNIFF[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        await app(scope, receive, send_with_nosniff)

    return with_nosniff
