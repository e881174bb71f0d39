"""The web process's application (docs/stream.md, "Serving"): ASGI, so that thousands of open availability
streams hold no thread each.

The async views (the stream) are served by Django's ASGI handler on the event loop. Its ``__call__`` gives
each request a thread of its own for the synchronous middleware, kept until the request ends, so every
open stream would hold an idle thread. The stream's paths (``SHARED_THREAD_PATHS``) enter it below that,
at ``handle``: their middleware runs in asgiref's one shared thread, briefly, when a stream opens.

Every other request goes to the same Django through its WSGI handler, one at a time per worker process
in one thread, as a synchronous gunicorn worker serves it: that thread keeps its persistent database
connection (``CONN_MAX_AGE``), which Django's ASGI handler, starting a thread per request, could not.

The hop to that thread is one per request: the request's body is read on the loop, the thread runs the
WSGI application and hands back the whole answer, the loop sends it (a streamed answer, such as a CSV
export, is sent chunk by chunk from the thread). asgiref's WsgiToAsgi, which hopped back to the loop for
every message, cost about a tenth of the order path's throughput (docs/figures.md).
"""

import asyncio
import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile
from typing import Any

from asgiref.wsgi import WsgiToAsgiInstance
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_site.settings.local")

asynchronous = get_asgi_application()
from apps.channels.stream.hub import request_cleanups  # noqa: E402  (apps load with the application above)

synchronous = get_wsgi_application()
# The one thread of this process that runs synchronous requests (it keeps the database connection).
_wsgi_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsgi")


def _wsgi_run(environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Any) -> tuple[dict, bytes | None]:
    """In the WSGI thread: the answer's start message and whole body, or (streamed) None once sent."""
    start: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        start.update(
            type="http.response.start",
            status=int(status.split(" ", 1)[0]),
            headers=[(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers],
        )

    result = synchronous(environ, start_response)  # type: ignore[arg-type]  # Django never calls write()
    try:
        if not getattr(result, "streaming", False):
            return start, b"".join(result)

        def sent(message: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        sent(start)
        for chunk in result:
            if chunk:
                sent({"type": "http.response.body", "body": chunk, "more_body": True})
        return start, None
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()  # Django's request_finished: the connection's age is checked here, in its own thread


async def _serve_synchronously(scope: dict[str, Any], receive: Any, send: Any) -> None:
    with SpooledTemporaryFile(max_size=65536) as body:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its request was read: nobody to answer
            body.write(message.get("body", b""))
            if not message.get("more_body"):
                break
        body.seek(0)
        try:
            bridge = WsgiToAsgiInstance(synchronous)
            bridge.scope = scope
            environ = bridge.build_environ(scope, body)
        except ValueError:  # too many duplicate headers
            await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Bad Request: too many duplicate headers"})
            return
        loop = asyncio.get_running_loop()
        context = contextvars.Context()  # nothing carried over from the thread's previous request
        start, whole = await loop.run_in_executor(_wsgi_thread, context.run, _wsgi_run, environ, loop, send)
    if whole is not None:
        await send(start)
        await send({"type": "http.response.body", "body": whole})
    else:
        await send({"type": "http.response.body"})


# Paths whose views are async (a prefix match is enough: nothing else lives below them).
ASYNC_PATHS = tuple(settings.ASYNC_PATHS)
SHARED_THREAD_PATHS = tuple(settings.SHARED_THREAD_PATHS)


async def _lifespan(receive, send):  # type: ignore[no-untyped-def]
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _in_fresh_context(app, scope, receive, send):  # type: ignore[no-untyped-def]
    """Each request in a context of its own. The server may start a keep-alive connection's next request
    from inside the previous one's send, whose context carries asgiref's executor of a thread that has
    finished by then; a request inheriting it fails ("CurrentThreadExecutor already quit"). What the
    request asked to undo at its end (an open stream's subscription) runs when the handler returns."""
    context = contextvars.Context()
    cleanups: list = []
    context.run(request_cleanups.set, cleanups)
    task = asyncio.get_running_loop().create_task(app(scope, receive, send), context=context)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        for cleanup in cleanups:
            cleanup()


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http" and scope["path"].startswith(SHARED_THREAD_PATHS):
        await _in_fresh_context(asynchronous.handle, scope, receive, send)
    elif scope["type"] == "http" and scope["path"].startswith(ASYNC_PATHS):
        await _in_fresh_context(asynchronous, scope, receive, send)
    elif scope["type"] == "http":
        await _serve_synchronously(scope, receive, send)
