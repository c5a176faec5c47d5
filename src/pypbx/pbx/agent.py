"""The API extensions' own SIP phone, inside the pypbx process.

An API extension is a party of calls that no phone stands behind: the business application
drives it with OzML. Rather than teach the B2BUA a second kind of call, pypbx gives the API
extensions a small user agent of their own on a loopback SIP port. The B2BUA rings it like
any registered phone (a call *to* 9994) and it calls the B2BUA like any phone (the `Call`
command *from* 9994). So an API extension's call is an ordinary call in ListActiveCalls and
history, and every command (Play, Record, BlindTransfer, Hangup...) works on it unchanged;
OzML acts on the far phone's leg of that call through the same code as the HTTP commands.

The agent's side of the media is silence: what the far phone hears from "the API extension"
is what pypbx plays into the phone's own leg. Silence is still *sent*, 20 ms frames from the
moment the call is answered, so the line carries silence between prompts, during a Delay,
a Record or while a notification is answered (spec 6.3, 2.3): a phone that gets no RTP at
all may take the call for dead, and the B2BUA only relays what the agent sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from pypbx.media.endpoint import MediaManager, RtpEndpoint
from pypbx.media.player import FRAME, LoopingSource, Player, Playout
from pypbx.net.stack import SipStack
from pypbx.net.transport import Addr
from pypbx.pbx.registrar import Binding
from pypbx.pbx.replies import reply
from pypbx.pbx.sdp_helpers import ALLOW, SUPPORTED_CODECS, codec_spec, new_session_id
from pypbx.sip.dialog import Dialog
from pypbx.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipURI,
    generate_call_id,
    generate_tag,
)
from pypbx.sip.sdp import (
    TELEPHONE_EVENT,
    SdpError,
    SessionDescription,
    build_answer,
    build_sdp,
    negotiate,
)
from pypbx.sip.transaction import RequestReceived, ServerTransaction, make_cancel

__all__ = ["AGENT_HEADER", "AgentCall", "ApiAgent"]

log = logging.getLogger(__name__)

# Names the calling API extension on the agent's INVITEs; honoured only from the agent.
AGENT_HEADER = "X-Pypbx-Api-Extension"
_TRANSPORT = "udp"
_SILENCE = np.zeros(FRAME, dtype=np.int16)


@dataclass(eq=False)
class AgentCall:
    """One call of an API extension, seen from the agent's side of the B2BUA."""

    sip_call_id: str
    api_extension: str
    incoming: bool
    invite: Request
    local_tag: str
    endpoint: RtpEndpoint
    server_txn: ServerTransaction | None = None
    dialog: Dialog | None = None
    local_sdp: SessionDescription | None = None
    final_status: int | None = None  # outgoing: the failure that ended the attempt
    remote_sdp: SessionDescription | None = None  # the B2BUA's side of the media
    silence: Player | None = None  # what the agent sends once the call is answered
    ringing: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class AgentCalls:
    """B2BUA call id -> the agent's sides of that call.

    A call between two API extensions (one dials the other with the Call command) has both
    of its ends in the agent under one B2BUA call id, and each script must act on its own
    end: the callee's IncomingCall script answers the incoming side, never the caller's.
    Lookups therefore say which side they mean; without a match the first side is taken.
    """

    def __init__(self) -> None:
        self._sides: dict[str, list[AgentCall]] = {}

    def add(self, call_id: str, agent_call: AgentCall) -> None:
        sides = self._sides.setdefault(call_id, [])
        if agent_call not in sides:
            sides.append(agent_call)

    def get(
        self, call_id: str, *, api_extension: str | None = None, incoming: bool | None = None
    ) -> AgentCall | None:
        candidates = self._sides.get(call_id)
        if not candidates:
            return None
        if incoming is not None:
            candidates = [s for s in candidates if s.incoming == incoming] or candidates
        if api_extension is not None:
            candidates = [s for s in candidates if s.api_extension == api_extension] or candidates
        return candidates[0]

    def discard(self, call_id: str) -> None:
        self._sides.pop(call_id, None)


class ApiAgent:
    def __init__(self, media: MediaManager, host: str, pbx_address: Addr) -> None:
        """`host`: a local address the PBX's SIP socket can reach; `pbx_address`: that socket
        (its port may still be 0 here: `start` is given the bound one)."""
        self.media = media
        self.host = host
        self.pbx_address = pbx_address
        # UDP only: a TCP listener on the kernel's choice of UDP port could collide
        self.stack = SipStack(host, 0, user_agent="pypbx-api-extension", tcp=False)
        self.on_incoming: Callable[[AgentCall], None] = lambda call: None
        self.calls: dict[str, AgentCall] = {}
        self.playout = Playout()  # the agent's own 20 ms clock for its silence
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> Addr:
        return (self.host, self.stack.port)

    async def start(self, pbx_port: int) -> None:
        self.pbx_address = (self.pbx_address[0], pbx_port)
        self.stack.on_request = self._on_request
        await self.stack.start()

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await self._release(call)
        await self.playout.close()
        await self.stack.stop()

    def binding(self, extension_id: str) -> Binding:
        """Where the B2BUA rings an API extension: a binding that never expires."""
        host, port = self.address
        return Binding(
            extension_id=extension_id,
            contact=f"sip:{extension_id}@{host}:{port}",
            source=self.address,
            transport=_TRANSPORT,
            expires_at=datetime.now(UTC) + timedelta(days=3650),
            call_id="api-extension",
            cseq=1,
            user_agent="pypbx API extension",
        )

    # ---------------------------------------------------------------- calls to the extension
    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        if request.method == "INVITE" and request.to_addr.tag is None:
            if event.transaction is not None:
                self._spawn(self._incoming(request, event.transaction))
            return
        call = self.calls.get(request.call_id)
        if request.method == "ACK":
            return
        if request.method == "CANCEL":
            self.stack.send_response(reply(request, 200))
            if call is not None and call.server_txn is not None and not call.answered.is_set():
                self.stack.send_response(reply(call.invite, 487, "Request Terminated"))
                self._spawn(self._release(call))
            return
        if call is None:
            self.stack.send_response(reply(request, 481, "Call/Transaction Does Not Exist"))
            return
        if request.method == "BYE":
            self.stack.send_response(reply(request, 200))
            self._spawn(self._release(call))
        elif request.method in ("INVITE", "UPDATE") and call.local_sdp is not None:
            # re-INVITE (hold, codec change): media is anchored on the PBX; keep ours
            response = reply(request, 200, tag=call.local_tag)
            response.headers.add("Contact", f"<{self._contact()}>")
            response.headers.add("Content-Type", "application/sdp")
            call.local_sdp.session_version += 1
            response.body = call.local_sdp.serialize()
            self.stack.send_response(response)
        else:
            self.stack.send_response(reply(request, 200))

    async def _incoming(self, request: Request, txn: ServerTransaction) -> None:
        extension = request.uri.user or ""
        try:
            offer = SessionDescription.parse(request.body)
            codecs, event = negotiate(offer, SUPPORTED_CODECS)
        except SdpError:
            self.stack.send_response(reply(request, 488, "Not Acceptable Here"))
            return
        endpoint = await self.media.create_endpoint()
        call = AgentCall(
            sip_call_id=request.call_id,
            api_extension=extension,
            incoming=True,
            invite=request,
            local_tag=generate_tag(),
            endpoint=endpoint,
            server_txn=txn,
            remote_sdp=offer,
        )
        call.local_sdp = build_answer(
            offer,
            address=self.address[0],
            port=endpoint.local_port,
            codecs=[codecs[0]],
            telephone_event=event,
            session_id=new_session_id(),
            session_version=1,
        )
        self.calls[call.sip_call_id] = call
        self.stack.send_response(reply(request, 180, "Ringing", tag=call.local_tag))
        self.on_incoming(call)

    def answer(self, call: AgentCall) -> None:
        if call.answered.is_set() or call.ended.is_set():
            return
        assert call.local_sdp is not None
        response = reply(call.invite, 200, tag=call.local_tag)
        response.headers.add("Contact", f"<{self._contact()}>")
        response.headers.add("Allow", ALLOW)
        response.headers.add("Content-Type", "application/sdp")
        response.body = call.local_sdp.serialize()
        call.dialog = Dialog.from_uas(call.invite, call.local_tag)
        self.stack.send_response(response)
        call.answered.set()
        self._send_silence(call)

    def reject(self, call: AgentCall, status: int, reason: str) -> None:
        if call.answered.is_set() or call.ended.is_set():
            return
        self.stack.send_response(reply(call.invite, status, reason, tag=call.local_tag))
        self._spawn(self._release(call))

    # ---------------------------------------------------------------- calls from the extension
    async def originate(
        self, api_extension: str, dialed: str, caller_id: str, display_name: str
    ) -> AgentCall:
        """INVITE `dialed` through the B2BUA as `api_extension`, presenting `caller_id`."""
        host = self.address[0]
        pbx_host, pbx_port = self.pbx_address
        endpoint = await self.media.create_endpoint()
        local_tag = generate_tag()
        sdp = build_sdp(
            address=host,
            port=endpoint.local_port,
            codecs=SUPPORTED_CODECS,
            telephone_event=TELEPHONE_EVENT,
            direction="sendrecv",
            session_id=new_session_id(),
            session_version=1,
        )
        target = SipURI.parse(f"sip:{dialed}@{pbx_host}:{pbx_port}")
        from_uri = SipURI.parse(f"sip:{caller_id}@{host}")
        headers = Headers()
        headers.add("Via", str(self.stack.new_via(pbx_host, _TRANSPORT)))
        headers.add("Max-Forwards", "70")
        headers.add(
            "From", str(Address(uri=from_uri, display_name=display_name, params={"tag": local_tag}))
        )
        headers.add("To", str(Address(uri=target, display_name=None, params={})))
        headers.add("Call-ID", generate_call_id(host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self._contact()}>")
        headers.add(AGENT_HEADER, api_extension)
        headers.add("Content-Type", "application/sdp")
        invite = Request("INVITE", target, headers, sdp.serialize())
        call = AgentCall(
            sip_call_id=invite.call_id,
            api_extension=api_extension,
            incoming=False,
            invite=invite,
            local_tag=local_tag,
            endpoint=endpoint,
            local_sdp=sdp,
        )
        self.calls[call.sip_call_id] = call
        self.stack.send_request(
            invite,
            self.pbx_address,
            _TRANSPORT,
            on_response=lambda response: self._on_response(call, response),
            on_timeout=lambda: self._failed(call, 408),
        )
        return call

    def _on_response(self, call: AgentCall, response: Response) -> None:
        if response.status < 200:
            if response.status in (180, 183):
                call.ringing.set()
            return
        if response.status >= 300:
            self._failed(call, response.status)
            return
        if call.dialog is None:
            call.dialog = Dialog.from_uac(call.invite, response)
        ack = call.dialog.create_ack(call.invite.cseq[0], self.stack.new_via(*self._via_args()))
        self.stack.send_stateless(ack, self.pbx_address, _TRANSPORT)
        if call.ended.is_set():  # answered after we gave up: end it at once
            self._send_bye(call)
            return
        call.ringing.set()
        call.answered.set()
        if response.body:
            with contextlib.suppress(SdpError):
                call.remote_sdp = SessionDescription.parse(response.body)
        self._send_silence(call)

    def _failed(self, call: AgentCall, status: int) -> None:
        call.final_status = status
        call.ringing.set()
        self._spawn(self._release(call))

    # ---------------------------------------------------------------- both directions
    def hangup(self, call: AgentCall) -> None:
        if call.ended.is_set():
            return
        if call.answered.is_set():
            self._send_bye(call)
        elif call.incoming:
            self.reject(call, 480, "Temporarily Unavailable")
            return
        else:  # still ringing out: CANCEL; the 487 to the INVITE releases the call
            cancel = make_cancel(call.invite)
            self.stack.send_request(
                cancel, self.pbx_address, _TRANSPORT, on_response=lambda r: None
            )
            return
        self._spawn(self._release(call))

    def _send_bye(self, call: AgentCall) -> None:
        if call.dialog is None:
            return
        bye = call.dialog.create_request("BYE", self.stack.new_via(*self._via_args()))
        self.stack.send_request(bye, self.pbx_address, _TRANSPORT, on_response=lambda r: None)

    def _send_silence(self, call: AgentCall) -> None:
        """Start the answered call's stream of silence towards the B2BUA, in the codec the
        two sides agreed (the first audio codec of the answer)."""
        local, remote = call.local_sdp, call.remote_sdp
        answer = local if call.incoming else remote
        audio = answer.audio() if answer is not None else None
        if remote is None or audio is None or call.silence is not None:
            return
        codec = next((c for c in audio.codecs if c.name.upper() in ("PCMU", "PCMA")), None)
        if codec is None:
            return
        event = next((c for c in audio.codecs if c.is_telephone_event), None)
        call.endpoint.set_remote(remote.audio_endpoint())
        player = Player(call.endpoint, codec_spec(codec, event), LoopingSource(_SILENCE))
        call.silence = self.playout.start(player)

    async def _release(self, call: AgentCall) -> None:
        if call.ended.is_set():
            return
        call.ended.set()
        if call.silence is not None:
            self.playout.stop(call.silence)
        call.ringing.set()
        self.calls.pop(call.sip_call_id, None)
        await self.media.release(call.endpoint)

    def _contact(self) -> SipURI:
        return self.stack.contact_uri(self.pbx_address[0], _TRANSPORT, "api")

    def _via_args(self) -> tuple[str, str]:
        return self.pbx_address[0], _TRANSPORT

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ignore(response: Response) -> None:
    """Responses to CANCEL and BYE need no handling."""
