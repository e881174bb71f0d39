"""The web process's application (docs/stream.md, "Serving"): ASGI, so that thousands of open availability
streams hold no thread each.

The async view (the stream) is served by Django's ASGI handler on the event loop. Every other request
goes to the same Django through its WSGI handler, one at a time per worker process in one thread, as a
synchronous gunicorn worker serves it: that thread keeps its persistent database connection
(``CONN_MAX_AGE``), which Django's ASGI handler, starting a thread per request, could not.
"""

import asyncio
import contextvars
import os

from asgiref.wsgi import WsgiToAsgi
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_site.settings.local")

asynchronous = get_asgi_application()
from apps.channels.stream.hub import request_cleanups  # noqa: E402  (apps load with the application above)

synchronous = WsgiToAsgi(get_wsgi_application())

# Paths whose views are async (a prefix match is enough: nothing else lives below them).
ASYNC_PATHS = tuple(settings.ASYNC_PATHS)


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
    elif scope["type"] == "http" and scope["path"].startswith(ASYNC_PATHS):
        await _in_fresh_context(asynchronous, scope, receive, send)
    else:
        await _in_fresh_context(synchronous, scope, receive, send)
