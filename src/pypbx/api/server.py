"""The aiohttp application serving the Ozeki-compatible HTTP API.

One handler serves `/` (XE dialect), `/api` and `/api/` (O10 dialect) and the documented
`/command=<Name>&...` slip (spec 2.1). Every API outcome is HTTP 200 with the XML envelope;
only requests outside the compatible surface get plain HTTP errors (404, 405).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from pypbx.api.access_log import RedactingAccessLogger
from pypbx.api.acl import AddressControl
from pypbx.api.auth import Authenticator, extract_credentials
from pypbx.api.commands import default_registry
from pypbx.api.commands.sms import RouterProvider
from pypbx.api.context import ApiStore, CommandContext, Dialect
from pypbx.api.params import Params, ParamsParseError, first_occurrences, parse_urlencoded
from pypbx.api.registry import CommandRegistry
from pypbx.api.settings import ApiSettings
from pypbx.api.status import TEMPLATES, ApiError, Status
from pypbx.api.xmlout import Node, render_response
from pypbx.messaging.email import EmailSender
from pypbx.pbx.control import PbxControl
from pypbx.store.records import OfficeUserRecord

logger = logging.getLogger(__name__)

XML_CONTENT_TYPE = "application/xml"
ALLOWED_METHODS = ("GET", "POST")
_ANOMALY_PREFIX = "/command="


@dataclass(frozen=True, slots=True)
class Route:
    dialect: Dialect
    query_prefix: str  # raw parameters carried in the path by the `/command=` form


def route_for(raw_path: str) -> Route | None:
    """Which dialect a request path selects, or None for paths outside the API."""
    if raw_path == "/":
        return Route(Dialect.XE, "")
    folded = raw_path.casefold()
    if folded in ("/api", "/api/"):
        return Route(Dialect.O10, "")
    if folded.startswith(_ANOMALY_PREFIX):
        return Route(Dialect.XE, raw_path[1:])
    return None


class ApiService:
    """Runs one request through the checks of spec 4.2 and the command registry."""

    def __init__(
        self,
        settings: ApiSettings,
        store: ApiStore,
        pbx: PbxControl,
        registry: CommandRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pbx = pbx
        self.registry = registry or default_registry()
        self.authenticator = Authenticator(store)
        self._address_control = AddressControl(settings.allowed_networks, settings.denied_addresses)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = route_for(request.rel_url.raw_path)
        if route is None:
            raise web.HTTPNotFound()
        if request.method not in ALLOWED_METHODS:
            raise web.HTTPMethodNotAllowed(request.method, ALLOWED_METHODS)
        try:
            body = await self._respond(request, route)
        except Exception:
            # Logged here, without the request target, so no password reaches the log.
            logger.exception("HTTP API request failed unexpectedly")
            return web.Response(status=500, text="Internal server error")
        return web.Response(body=body, content_type=XML_CONTENT_TYPE, charset="utf-8")

    async def _respond(self, request: web.Request, route: Route) -> bytes:
        try:
            payload, name = await self._run(request, route)
        except ApiError as exc:
            logger.debug("HTTP API answered %d", exc.status)
            return render_response(exc.status, exc.message)
        logger.debug("HTTP API %s answered 200", name)
        return render_response(Status.OK, TEMPLATES[Status.OK], payload)

    async def _run(self, request: web.Request, route: Route) -> tuple[list[Node], str]:
        if not self._address_control.is_allowed(request.remote):
            logger.info("HTTP API request from forbidden address %s", request.remote)
            raise ApiError(Status.FORBIDDEN_ADDRESS)
        params = await read_params(request, route.query_prefix)
        user: OfficeUserRecord | None = None
        if self.settings.auth_required:
            credentials = extract_credentials(params, request.headers.get(hdrs.AUTHORIZATION))
            user = await self.authenticator.authenticate(credentials, request.remote)
        value = params.get("command")
        if value is None:
            raise ApiError(Status.INVALID_PARAMETER, "command", "")
        command = self.registry.lookup(value)
        if command is None or command.handler is None:
            raise ApiError(Status.NOT_IMPLEMENTED_COMMAND, value)
        if command.admin_only and user is not None and not user.is_admin:
            raise ApiError(Status.FORBIDDEN_USER)
        context = CommandContext(
            command_name=command.name,
            requested_name=value.strip(),
            args=command.bind(params),
            dialect=route.dialect,
            settings=self.settings,
            store=self.store,
            pbx=self.pbx,
            user=user,
        )
        return list(await command.handler(context)), command.name


class RecordingFiles:
    """GET /recordings/<path>: the files `Record` made (RecordURL points here).

    Same address control and office-user authentication as the API (credentials as query
    parameters or HTTP Basic); a path that leaves the recordings directory is not found.
    """

    def __init__(self, service: ApiService, directory: Path) -> None:
        self.service = service
        self.directory = directory.resolve()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ("GET", "HEAD"))
        if not self.service._address_control.is_allowed(request.remote):
            raise web.HTTPForbidden()
        if self.service.settings.auth_required:
            params = Params(first_occurrences(request.rel_url.query.items()), {})
            credentials = extract_credentials(params, request.headers.get(hdrs.AUTHORIZATION))
            try:
                await self.service.authenticator.authenticate(credentials, request.remote)
            except ApiError:
                raise web.HTTPUnauthorized(
                    headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="pypbx"'}
                ) from None
        relative = request.match_info["path"]
        if "\x00" in relative:
            raise web.HTTPNotFound()
        path = (self.directory / relative).resolve()
        if not path.is_relative_to(self.directory) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)


async def read_params(request: web.Request, query_prefix: str = "") -> Params:
    """Query (plus path-carried) parameters merged with a form body; 300 if undecodable."""
    raw_query = request.rel_url.raw_query_string
    if query_prefix:
        raw_query = f"{query_prefix}&{raw_query}" if raw_query else query_prefix
    try:
        query = first_occurrences(parse_urlencoded(raw_query))
        body = await _read_body(request) if request.method == "POST" else {}
    except ParamsParseError as exc:
        raise ApiError(Status.PARSE_ERROR, str(exc)) from exc
    return Params(query, body)


async def _read_body(request: web.Request) -> dict[str, str]:
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    try:
        if content_type is not None and request.content_type == "multipart/form-data":
            return await _read_multipart(request)
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ParamsParseError("request body too large") from exc
    if not raw.strip():
        return {}
    if content_type is not None and request.content_type != "application/x-www-form-urlencoded":
        raise ParamsParseError(f"unsupported Content-Type {request.content_type}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsParseError("invalid UTF-8 in request") from exc
    return first_occurrences(parse_urlencoded(text))


async def _read_multipart(request: web.Request) -> dict[str, str]:
    """multipart/form-data is not documented but harmless to accept (spec 2.2)."""
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParamsParseError("unparsable multipart body") from exc
    pairs: list[tuple[str, str]] = []
    for name, value in form.items():
        if isinstance(value, str):
            pairs.append((name, value))
            continue
        data = value if isinstance(value, (bytes, bytearray)) else value.file.read()
        try:
            pairs.append((name, bytes(data).decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise ParamsParseError("invalid UTF-8 in request") from exc
    return first_occurrences(pairs)


API_SERVICE = web.AppKey("pypbx_api_service", ApiService)


def create_app(
    settings: ApiSettings,
    store: ApiStore,
    pbx: PbxControl,
    *,
    email_sender: EmailSender | None = None,
    sms_router: RouterProvider = lambda: None,
) -> web.Application:
    """The HTTP API application; serve it with any aiohttp runner.

    The redacting access logger is forced through `handler_args`, which override the
    runner's own `access_log_class`, so no way of running the app logs passwords.
    """
    service = ApiService(settings, store, pbx, default_registry(lambda: email_sender, sms_router))
    app = web.Application(handler_args={"access_log_class": RedactingAccessLogger})
    app[API_SERVICE] = service
    if settings.recordings_dir is not None:
        files = RecordingFiles(service, settings.recordings_dir)
        app.router.add_route(hdrs.METH_ANY, "/recordings/{path:.+}", files.handle)
    app.router.add_route(hdrs.METH_ANY, "/{tail:.*}", service.handle)
    return app
