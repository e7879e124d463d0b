"""The path spellings OpenAI clients use for the ``/v1`` routes.

SDKs and tools built with another base URL call ``/chat/completions``
(``base_url`` set to the host without ``/v1``), or add a trailing slash;
a redirect does not help, as clients do not follow a 30x on a POST. So
every ``/v1/...`` route is also registered, same handler, at the path
without ``/v1`` and at both with a trailing slash. It runs at startup, so
routes added after the application is built get theirs too; an alias
costs a request nothing (the router's lookup is by path).
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_v1_aliases", "aliases_of", "on_startup"]

_PREFIX = "/v1/"


def aliases_of(path: str) -> list[str]:
    """The other spellings of a ``/v1/...`` path (none for other paths)."""
    if not path.startswith(_PREFIX):
        return []
    bare = path[len(_PREFIX) - 1 :]
    return [path + "/", bare, bare + "/"]


def add_v1_aliases(app: web.Application) -> None:
    """Registers the aliases of every ``/v1/...`` route of ``app``; a path
    that is already a route of its own keeps its own handler."""
    router = app.router
    taken = {resource.canonical for resource in router.resources()}
    for resource in list(router.resources()):
        for alias in aliases_of(resource.canonical):
            if alias in taken:
                continue
            taken.add(alias)
            for route in resource:
                router.add_route(route.method, alias, route.handler)


async def on_startup(app: web.Application) -> None:
    """``add_v1_aliases`` as an ``on_startup`` callback."""
    add_v1_aliases(app)
