"""The running PBX: routes each SIP request to the registrar or the B2BUA and offers the
operations of `PbxControl` to the HTTP API."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pypbx.media.endpoint import MediaManager
from pypbx.media.fetch import AudioResolver
from pypbx.media.player import Pcm
from pypbx.media.tts import SpeechEngine
from pypbx.messaging.email import EmailSender
from pypbx.messaging.smpp import SmppGateway
from pypbx.net.localaddr import is_wildcard
from pypbx.net.stack import SipStack
from pypbx.notify import Notifier
from pypbx.pbx.abuse import FailureBans
from pypbx.pbx.agent import ApiAgent
from pypbx.pbx.api_extensions import (
    ApiExtensions,
    ApiExtensionUnavailableError,
    CallConnectFailedError,
)
from pypbx.pbx.auth import SipAuthenticator
from pypbx.pbx.b2bua import ALLOW, B2BUA
from pypbx.pbx.call import Call
from pypbx.pbx.call_changed import CallChangedReporter
from pypbx.pbx.call_limits import CallLimits
from pypbx.pbx.call_media import CallMedia, MediaOptions
from pypbx.pbx.control import (
    ActiveCallInfo,
    AlarmRequest,
    ApiExtensionError,
    CallFailedError,
    CallRequest,
    RecordRequest,
)
from pypbx.pbx.dialplan import Rule
from pypbx.pbx.flood import FloodLimits
from pypbx.pbx.lines import Lines
from pypbx.pbx.messages import MessageRouter
from pypbx.pbx.notification_urls import NotificationUrls
from pypbx.pbx.registrar import Registrar, credentials_fingerprint
from pypbx.pbx.replies import reply
from pypbx.pbx.router import CallRouter
from pypbx.pbx.routing import RouteInterceptor
from pypbx.sip.digest import DigestVerifier, NonceManager
from pypbx.sip.message import Request
from pypbx.sip.transaction import RequestReceived
from pypbx.store.records import HTTP_API_SETTINGS_ID
from pypbx.store.store import Store

log = logging.getLogger(__name__)


class Pbx:
    """Composition root of the SIP side; implements `pypbx.pbx.control.PbxControl`."""

    def __init__(
        self,
        stack: SipStack,
        store: Store,
        media: MediaManager,
        *,
        realm: str,
        nonce_secret: bytes,
        nonce_lifetime: float = 300.0,
        ring_timeout: float = 90.0,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 600,
        media_address: str | None = None,
        digest_algorithms: tuple[str, ...] = ("MD5",),
        hold_music: Pcm | None = None,
        inband_dtmf: str = "auto",
        dial_plan: Sequence[Rule] = (),
        rtp_timeout: float = 60.0,
        auth_bans: FailureBans | None = None,
        flood_limits: FloodLimits | None = None,
        call_limits: CallLimits | None = None,
    ) -> None:
        self.stack = stack
        self.store = store
        # TOML defaults are handed in by enable_media; until then only stored ones apply
        self.notification_urls = NotificationUrls(store)
        self.media = media
        verifier = DigestVerifier(
            realm,
            NonceManager(nonce_secret, lifetime=nonce_lifetime),
            algorithms=tuple(digest_algorithms),
        )
        self.auth = SipAuthenticator(realm, verifier, store)
        if auth_bans is not None:
            self.auth.bans = auth_bans
        self.registrar = Registrar(
            stack,
            store,
            self.auth,
            min_expires=min_expires,
            max_expires=max_expires,
            default_expires=default_expires,
        )
        self.b2bua = B2BUA(
            stack,
            store,
            self.registrar,
            self.auth,
            media,
            ring_timeout=ring_timeout,
            media_address=media_address,
            hold_music=hold_music,
            inband_dtmf=inband_dtmf,
            rtp_timeout=rtp_timeout,
        )
        self.b2bua.router = CallRouter(store, dial_plan)
        self.flood = flood_limits  # None: no per-source request rate limits
        if call_limits is not None:
            self.b2bua.call_limits = call_limits
        self.lines = Lines(stack, store)
        self.b2bua.lines = self.lines
        self.call_media: CallMedia | None = None
        self.agent: ApiAgent | None = None
        self.api_extensions: ApiExtensions | None = None
        self.call_changed: CallChangedReporter | None = None
        self.messages: MessageRouter | None = None  # SIP MESSAGE and SendSms
        self.smpp: SmppGateway | None = None  # SendSms to outside numbers, incoming SMS
        self.notifier: Notifier | None = None
        self._transfer_reports: dict[str, tuple[str, str]] = {}  # new call -> (old id, URL)
        self.b2bua.on_call_ended.append(self._report_transfer)
        stack.on_request = self.on_request
        stack.on_stray_response = self.b2bua.on_stray_response
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.Task[None] | None = None

    @staticmethod
    async def nonce_secret(store: Store) -> bytes:
        """A secret kept in the store, so nonces issued before a restart stay valid."""
        value = await store.get_setting("sip.nonce_secret")
        if not isinstance(value, str):
            value = secrets.token_hex(32)
            await store.set_setting("sip.nonce_secret", value)
        return bytes.fromhex(value)

    def enable_media(
        self,
        resolver: AudioResolver,
        speech: SpeechEngine,
        notifier: Notifier,
        options: MediaOptions,
        *,
        email: Callable[[], EmailSender | None] = lambda: None,
        notification_urls: NotificationUrls | None = None,
        smpp: SmppGateway | None = None,
        smpp_incoming_extension: str | None = None,
    ) -> CallMedia:
        """Turn on Play, Speak, Record, SendDTMF and API extensions with their OzML (the
        process does this at start; tests of the SIP side alone can leave it off)."""
        self.call_media = CallMedia(self.b2bua, resolver, speech, notifier, options)
        self.notifier = notifier
        host = self.stack.bind_host
        if is_wildcard(host):
            host = "::1" if ":" in host else "127.0.0.1"
        self.agent = ApiAgent(self.media, host, (host, self.stack.port))
        self.api_extensions = ApiExtensions(
            self.b2bua,
            self.call_media,
            self.agent,
            self.store,
            notifier,
            email=email,
            recordings_dir=options.recordings_dir,
            sms=lambda: self.messages,
        )
        if notification_urls is not None:
            self.notification_urls = notification_urls
        urls = self.notification_urls
        self.b2bua.interceptor = RouteInterceptor(notifier, urls.route_interception)
        self.call_changed = CallChangedReporter(
            self.b2bua, notifier, urls.call_changed, self.api_extensions.actions
        )
        self.messages = MessageRouter(
            self.stack,
            self.store,
            self.registrar,
            self.auth,
            notifier,
            actions=self.api_extensions.actions,
            gateway=smpp,
            incoming_api_extension=smpp_incoming_extension,
        )
        self.smpp = smpp
        return self.call_media

    async def start(self) -> None:
        await self.registrar.load()
        await self.notification_urls.reload()
        await self.stack.start()
        if self.agent is not None:
            await self.agent.start(self.stack.port)
        await self.lines.start()
        self._expiry = asyncio.get_running_loop().create_task(self.registrar.expire_loop())
        if self.smpp is not None:
            self.smpp.start()
        if self.messages is not None:
            await self.messages.start()

    async def stop(self) -> None:
        """Hang up every call (BYE), write their history, then close the sockets."""
        if self.api_extensions is not None:
            await self.api_extensions.close()
        if self.call_changed is not None:
            await self.call_changed.close()
        self.b2bua.shutdown()
        await self.b2bua.drain()
        await self.store.history.flush()  # the rows of the calls just ended are written
        if self.agent is not None:
            await self.agent.stop()
        await self.lines.stop()
        if self._tasks:
            log.debug("shutting down: waiting for %d request tasks", len(self._tasks))
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0.2)  # let the BYEs leave before the sockets close
        if self._expiry is not None:
            self._expiry.cancel()
        if self.messages is not None:
            await self.messages.close()
        if self.smpp is not None:
            await self.smpp.stop()
        log.debug("shutting down: SIP transports")
        await self.stack.stop()

    # ----------------------------------------------------------------- SIP input
    def on_request(self, event: RequestReceived) -> None:
        request = event.request
        method = request.method
        if request.to_addr.tag is not None and method not in ("REGISTER", "OPTIONS", "CANCEL"):
            self.b2bua.in_dialog(event)
            return
        now = time.monotonic()
        if self.agent is not None and event.source == self.agent.address:
            pass  # our own API-extension agent: never banned or rate limited as a stranger
        elif self.auth.bans.banned(event.source[0], now):
            if method != "ACK":  # banned: the same answer as a failed login, nothing more
                self.stack.send_response(reply(request, 403, "Forbidden"))
            return
        elif self.flood is not None:
            retry = self.flood.check(event.source[0], method, now)
            if retry is not None:  # over its rate: no store access, no digest work
                if method in ("INVITE", "REGISTER"):
                    response = reply(request, 503, "Service Unavailable")
                    response.headers.add("Retry-After", str(retry))
                    self.stack.send_response(response)
                return  # other requests of a flood are dropped
        if request.uri.scheme.lower() not in ("sip", "sips"):
            # tel:, urn:, anything else: nothing here routes on them (RFC 3261 8.2.2.1)
            if method != "ACK":
                self.stack.send_response(reply(request, 416, "Unsupported URI Scheme"))
            return
        if method == "REGISTER":
            if not self._register_now(event):
                self._spawn(self._register(event), request)
        elif method == "INVITE":
            self._spawn(self.b2bua.on_invite(event), request)
        elif method == "MESSAGE" and self.messages is not None:
            self._spawn(self.messages.on_message(event), request)
        elif method == "CANCEL":
            self.b2bua.on_cancel(event)
        elif method == "ACK":
            return  # ACK for a non-2xx is absorbed by its transaction; others are stray
        elif method == "OPTIONS":
            response = reply(request, 200)
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", "application/sdp")
            self.stack.send_response(response)
        else:
            response = reply(request, 405, "Method Not Allowed")
            response.headers.add("Allow", ALLOW)
            self.stack.send_response(response)

    def _register_now(self, event: RequestReceived) -> bool:
        """Answer a REGISTER from memory, without a task (most are); False if it needs one
        (its extension must be read from the store). A task costs about a tenth of a
        registration's CPU."""
        try:
            if not self.registrar.handle_now(event):
                return False
        except Exception:
            log.exception("error handling REGISTER %s", event.request.call_id)
            try:
                self.stack.send_response(reply(event.request, 500, "Server Internal Error"))
            except Exception:
                log.debug("could not send 500", exc_info=True)
            return True
        # messages waiting for a phone that just registered
        if self.messages is not None and self.messages.waiting:
            self._spawn(self.messages.after_register(event), event.request)
        return True

    async def _register(self, event: RequestReceived) -> None:
        await self.registrar.handle(event)
        if self.messages is not None:  # messages waiting for a phone that just registered
            await self.messages.after_register(event)

    def _spawn(self, coro: Coroutine[Any, Any, None], request: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, None], request: Request) -> None:
        try:
            await coro
        except Exception:
            log.exception("error handling %s %s", request.method, request.call_id)
            try:
                self.stack.send_response(reply(request, 500, "Server Internal Error"))
            except Exception:
                log.debug("could not send 500", exc_info=True)

    # ----------------------------------------------------------------- PbxControl
    def active_calls(self) -> list[ActiveCallInfo]:
        now = asyncio.get_running_loop().time()
        calls = [call for call in self.b2bua.calls.values() if not call.is_over]
        calls.sort(key=lambda c: c.started)
        return [call.info(now) for call in calls]

    async def hangup(self, call_id: str) -> None:
        self.b2bua.hangup(call_id)

    async def hold(self, call_id: str) -> None:
        self.b2bua.hold(call_id)

    async def unhold(self, call_id: str) -> None:
        self.b2bua.unhold(call_id)

    async def forward(self, call_id: str, destination: str) -> None:
        await self.b2bua.forward(call_id, destination)

    async def blind_transfer(
        self, call_id: str, target: str, transferor_party: str, finished_url: str | None = None
    ) -> None:
        new_id = await self.b2bua.blind_transfer(call_id, target, transferor_party)
        if finished_url:
            self._transfer_reports[new_id] = (call_id, finished_url)

    def _report_transfer(self, call: Call) -> None:
        """BlindTransfer's FinishedUrl: how the call that carried the party on ended."""
        report = self._transfer_reports.pop(call.id, None)
        if report is None or self.notifier is None:
            return
        original, url = report
        now = asyncio.get_running_loop().time()
        fields = [
            ("CallId", original),
            ("Caller", call.source),
            ("Callee", call.destination),
            ("Duration", str(round(call.talk_duration(now)))),
            ("State", call.result.value if call.result is not None else ""),
            ("TransferredCallId", call.id),
        ]
        self.notifier.post(url, "TransferFinished", fields, key=original)

    async def attended_transfer(self, transferred_id: str, target_id: str) -> None:
        await self.b2bua.attended_transfer(transferred_id, target_id)

    def _media(self) -> CallMedia:
        if self.call_media is None:
            raise RuntimeError("media features are not enabled")
        return self.call_media

    async def play(
        self, call_id: str, party: str, audio_file: str, *, repeat: bool, timeout: int | None
    ) -> None:
        await self._media().play(call_id, party, audio_file, repeat=repeat, timeout=timeout)

    async def speak(
        self, call_id: str, party: str, text: str, *, language: str | None, voice: str | None
    ) -> None:
        await self._media().speak(call_id, party, text, language=language, voice=voice)

    async def record(self, call_id: str, request: RecordRequest) -> None:
        await self._media().record(call_id, request)

    async def send_dtmf(self, call_id: str, party: str, keys: str) -> None:
        await self._media().send_dtmf(call_id, party, keys)

    async def send_alarm(self, request: AlarmRequest, username: str | None) -> None:
        if self.api_extensions is None:
            raise RuntimeError("API extensions are not enabled")
        await self.api_extensions.alarms.send(request, username=username)

    async def call(self, request: CallRequest, username: str | None) -> str:
        if self.api_extensions is None:
            raise RuntimeError("API extensions are not enabled")
        try:
            return await self.api_extensions.originate(
                api_extension=request.api_extension,
                dialed=request.dialed,
                caller_id=request.caller_id,
                caller_display_name=request.caller_display_name,
                url=request.url,
                error_url=request.error_url,
                response_ozml=request.response_ozml,
                finished_url=request.finished_url,
                ring_time=request.ring_time,
                username=username,
            )
        except ApiExtensionUnavailableError as exc:
            raise ApiExtensionError(request.api_extension) from exc
        except CallConnectFailedError as exc:
            raise CallFailedError(exc.dialed, exc.state) from exc

    def line_status(self, line_id: str) -> str | None:
        """An outside line's registration: Registered, Registering, Failed: ..., or None."""
        return self.lines.status(line_id)

    def is_registered(self, extension_id: str) -> bool:
        return self.registrar.is_registered(extension_id)

    async def extension_added(self, extension_id: str) -> None:
        """A new extension: an outside line with Register starts registering."""
        if extension_id == HTTP_API_SETTINGS_ID:
            await self.notification_urls.reload()
            return
        record = await self.store.get_extension(extension_id)
        if record is not None and record.type == "Line":
            await self.lines.changed(extension_id)

    async def extension_changed(self, extension_id: str) -> None:
        if extension_id == HTTP_API_SETTINGS_ID:
            await self.notification_urls.reload()
            return
        if extension_id in self.lines.registrations or (
            (record := await self.store.get_extension(extension_id)) is not None
            and record.type == "Line"
        ):
            await self.lines.changed(extension_id)
        ext = await self.store.get_extension(extension_id)
        seen = self.registrar.credentials_seen.get(extension_id)
        if (
            ext is None
            or not ext.enabled
            or (seen is not None and seen != credentials_fingerprint(ext))
        ):
            self.registrar.credentials_seen.pop(extension_id, None)
            await self.registrar.drop(extension_id)
