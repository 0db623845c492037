"""Cancel a handler when its client hangs up — only while the response is still in flight.

Plain (non-streaming) endpoints on current Starlette keep running after their client is
gone. This ASGI middleware gives them the cancellation streaming endpoints get: it reads
the client's messages itself, hands them on to the app, and cancels the app when an
``http.disconnect`` arrives before the response body has ended. A disconnect after the
response has been sent is the normal end of a request and cancels nothing: a naive
version that cancels then also cancels FastAPI's post-response dependency cleanup, and
leaks with perfectly normal clients.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_done = False
        to_app, from_client = anyio.create_memory_object_stream[Message](max_buffer_size=16)

        async def app_send(message: Message) -> None:
            nonlocal response_done
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response_done = True
            await send(message)

        async def app_receive() -> Message:
            return await from_client.receive()

        async with anyio.create_task_group() as group, to_app, from_client:

            async def watch_client() -> None:
                while True:
                    message = await receive()
                    await to_app.send(message)
                    if message["type"] == "http.disconnect":
                        if not response_done:
                            group.cancel_scope.cancel()
                        return

            group.start_soon(watch_client)
            await self.app(scope, app_receive, app_send)
            group.cancel_scope.cancel()  # the app is done: stop watching
