"""ASGI entry point: Django for HTTP, Channels for WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from console.clientaddr import ClientAddressMiddleware  # noqa: E402
from console.ws import websocket_stack  # noqa: E402

# each app lists its WebSocket routes; console imports them by dotted path only
websocket_urlpatterns = [
    route for path in settings.TANGLAW_WEBSOCKET_ROUTES for route in import_string(path)
]

# apps may serve a path prefix with an ASGI app of their own (the gateway's /v1/ skips
# the console's middleware chain); console names them by dotted path only
MOUNTS = [(prefix, import_string(path)) for prefix, path in settings.TANGLAW_ASGI_MOUNTS]


async def http_app(scope, receive, send):
    path = scope.get("path", "")
    for prefix, mounted in MOUNTS:
        if path.startswith(prefix):
            return await mounted(scope, receive, send)
    return await django_app(scope, receive, send)


# outermost: the one client address (trusted proxies only) for HTTP and WebSocket
application = ClientAddressMiddleware(ProtocolTypeRouter({
    "http": http_app,
    "websocket": websocket_stack(URLRouter(websocket_urlpatterns)),
}))
