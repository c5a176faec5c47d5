"""Drive a PJSIP softphone (pjsua2) from tests: hold, blind and attended transfer from a phone.

baresip cannot start an attended transfer (REFER with Replaces) or report the NOTIFY progress
of one; pjsua2 can. Its Endpoint is a process-wide singleton with threads of its own, so each
phone is a separate process: this file run as a script is the agent (the only code here that
imports pjsua2, a GPL test-only dependency), and `PjsuaPhone` is the test side that spawns it
and talks to it in JSON lines over the agent's stdin and stdout.

The agent binds SIP and RTP to 127.0.0.1, uses the null sound device, offers only G.711,
plays a looped WAV as its microphone into every call and records what each call hears to its
own WAV file. Calls have small integer handles chosen by the agent; events (registration,
call states, media states, REFER progress) are pushed as they happen, and the test side keeps
them so a test can wait for an event that may already have arrived.

Protocol: request `{"id": 1, "cmd": "dial", "uri": "sip:..."}` -> response
`{"id": 1, "ok": true, "result": ...}` or `{"id": 1, "ok": false, "error": "..."}`; events
`{"event": "state", "call": 1, "state": "CONFIRMED", ...}`. EOF on stdin or `quit` ends it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

Event = dict[str, Any]


class PjsuaError(RuntimeError):
    """The phone did not do what the test asked in time; the message has its log tail."""


@dataclass
class PjsuaConfig:
    """Everything the agent needs, passed to it as one JSON argument."""

    user: str
    password: str
    registrar: str  # host:port of pypbx
    sip_port: int
    rtp_port: int
    rtp_count: int
    tone_wav: str
    rec_dir: str
    log_path: str
    auto_answer: bool = True
    lifetime: float = 300.0  # the agent quits by itself after this, whatever the test does


# =================================================================== test side
class PjsuaPhone:
    """One pjsua2 agent process with one registered account; stop() always reaps it."""

    def __init__(self, workdir: Path, config: PjsuaConfig) -> None:
        self.workdir = workdir
        self.config = config
        self.user = config.user
        self.log_path = Path(config.log_path)
        self.stderr_path = workdir / "agent.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._claimed: set[int] = set()
        self._responses: dict[int, Event] = {}
        self._closed = False
        self._next_id = 0
        self._reader: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, *, timeout: float = 10.0) -> PjsuaPhone:
        """Spawn the agent and wait until its account is registered (200 to REGISTER)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        Path(self.config.rec_dir).mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), json.dumps(asdict(self.config))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self._reader = threading.Thread(
            target=self._read_loop, name=f"pjsua-{self.user}", daemon=True
        )
        self._reader.start()
        self.wait_for_event("reg", timeout=timeout, where=lambda e: e["code"] == 200)
        return self

    def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                msg = json.loads(raw)
                with self._cond:
                    if "event" in msg:
                        logger.debug("%s event %s", self.user, msg)
                        self._events.append(msg)
                    else:
                        self._responses[int(msg["id"])] = msg
                    self._cond.notify_all()
        except (OSError, ValueError) as exc:
            logger.debug("%s reader stopped: %s", self.user, exc)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def stop(self, grace: float = 5.0) -> int | None:
        """Ask the agent to quit (it closes its recordings first), then SIGTERM, SIGKILL."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(PjsuaError):
                self.command("quit", timeout=grace)
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        for sig, wait in ((None, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        if self._reader is not None:
            self._reader.join(2.0)
        return proc.poll()

    def __enter__(self) -> PjsuaPhone:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------
    def command(self, cmd: str, timeout: float = 5.0, **params: Any) -> Any:
        """Run one agent command and return its result (raises PjsuaError unless ok)."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise PjsuaError(f"{self.user}: phone not started")
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        line = json.dumps({"id": ident, "cmd": cmd, **params}) + "\n"
        try:
            proc.stdin.write(line.encode())
            proc.stdin.flush()
        except OSError as exc:
            raise PjsuaError(f"{self.user}: agent gone ({exc})\n{self.log_tail()}") from exc
        with self._cond:
            self._cond.wait_for(lambda: ident in self._responses or self._closed, timeout)
            response = self._responses.pop(ident, None)
        if response is None:
            raise PjsuaError(f"{self.user}: no response to {cmd!r}\n{self.log_tail()}")
        if not response.get("ok"):
            raise PjsuaError(f"{self.user}: {cmd!r} failed: {response.get('error')}")
        return response.get("result")

    def dial(self, uri: str) -> int:
        """Place a call; returns its handle."""
        return int(self.command("dial", uri=uri))

    def answer(self, call: int, code: int = 200) -> None:
        self.command("answer", call=call, code=code)

    def hangup(self, call: int) -> None:
        self.command("hangup", call=call)

    def hold(self, call: int) -> None:
        """re-INVITE with a=sendonly (pjsua's default hold)."""
        self.command("hold", call=call)

    def unhold(self, call: int) -> None:
        """re-INVITE with a=sendrecv."""
        self.command("unhold", call=call)

    def xfer(self, call: int, uri: str) -> None:
        """Blind transfer: REFER with Refer-To `uri` on `call`."""
        self.command("xfer", call=call, uri=uri)

    def xfer_replaces(self, call: int, target: int) -> None:
        """Attended transfer: REFER on `call` whose Refer-To carries Replaces for `target`."""
        self.command("xfer_replaces", call=call, target=target)

    def calls(self) -> list[Event]:
        """The agent's calls: handle, state, media status, remote URI."""
        return list(self.command("calls"))

    # -- events ----------------------------------------------------------------------------
    def events(self, kind: str | None = None, call: int | None = None) -> list[Event]:
        """All events so far (optionally of one kind and call), claimed or not."""
        with self._cond:
            return [
                e
                for e in self._events
                if kind in (None, e["event"]) and call in (None, e.get("call"))
            ]

    def wait_for_event(
        self,
        kind: str,
        *,
        call: int | None = None,
        timeout: float = 10.0,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The oldest not yet returned event of this kind (and call, and `where(event)`).

        Events that arrived before the call count, so there is no race between an action and
        the wait for its consequence.
        """
        found: list[int] = []

        def ready() -> bool:
            for i, event in enumerate(self._events):
                if (
                    i not in self._claimed
                    and event["event"] == kind
                    and call in (None, event.get("call"))
                    and (where is None or where(event))
                ):
                    found.append(i)
                    return True
            return self._closed

        with self._cond:
            self._cond.wait_for(ready, timeout=timeout)
            if found:
                self._claimed.add(found[0])
                return self._events[found[0]]
            seen = [
                {k: v for k, v in e.items() if k in ("event", "call", "state", "code")}
                for e in self._events
            ]
        raise PjsuaError(
            f"{self.user}: no {kind} event (call {call}) within {timeout} s; seen: {seen}\n"
            f"{self.log_tail()}"
        )

    def wait_for_state(self, call: int, state: str, timeout: float = 10.0) -> Event:
        """Wait for `call` to reach an INVITE session state (CONFIRMED, DISCONNECTED, ...)."""
        return self.wait_for_event(
            "state", call=call, timeout=timeout, where=lambda e: e["state"] == state
        )

    def wait_for_incoming(self, timeout: float = 10.0) -> int:
        """The handle of the next incoming call."""
        return int(self.wait_for_event("incoming", timeout=timeout)["call"])

    def recording(self, call: int, timeout: float = 10.0) -> Path:
        """What `call` heard, as a WAV closed when the call ended (waits for that)."""
        event = self.wait_for_event("recorded", call=call, timeout=timeout)
        return Path(event["path"])

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.stderr_path, self.log_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no log)"

    def sip_log(self) -> str:
        """The agent's whole pjsua log (SIP messages included): evidence for a failing flow."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# =================================================================== agent side
def _wav_complete(path: Path) -> bool:
    """True once a WAV file's RIFF header states the file's real length (writer closed)."""
    try:
        with path.open("rb") as wav:
            header = wav.read(8)
        size = path.stat().st_size
    except OSError:
        return False
    return len(header) == 8 and int.from_bytes(header[4:8], "little") == size - 8


def _agent(config: PjsuaConfig) -> int:
    """Run one pjsua2 phone until quit, EOF on stdin, or its lifetime ends.

    Everything runs in this thread: threadCnt=0 plus mainThreadOnly makes pjsua2 deliver its
    callbacks from libHandleEvents, so no pjsua call is ever made from a foreign thread.
    """
    import pjsua2 as pj  # GPL, test only: imported in the agent process, never in pypbx

    # stdout carries the protocol; anything the library prints goes to stderr instead
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(message: Event) -> None:
        out.write(json.dumps(message) + "\n")

    ep = pj.Endpoint()
    ep.libCreate()
    ep_cfg = pj.EpConfig()
    ep_cfg.uaConfig.threadCnt = 0
    ep_cfg.uaConfig.mainThreadOnly = True
    ep_cfg.uaConfig.maxCalls = 8
    ep_cfg.uaConfig.userAgent = "pypbx-tests-pjsua2"
    ep_cfg.logConfig.filename = config.log_path
    ep_cfg.logConfig.level = 5
    ep_cfg.logConfig.consoleLevel = 0
    ep_cfg.logConfig.msgLogging = True
    ep_cfg.medConfig.clockRate = 8000
    ep_cfg.medConfig.sndClockRate = 8000
    ep_cfg.medConfig.channelCount = 1
    ep_cfg.medConfig.ecTailLen = 0  # no echo canceller: it would eat the test tones
    ep_cfg.medConfig.noVad = True
    ep.libInit(ep_cfg)
    tp_cfg = pj.TransportConfig()
    tp_cfg.port = config.sip_port
    tp_cfg.boundAddress = "127.0.0.1"
    tp_cfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tp_cfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        prio = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
        ep.codecSetPriority(codec.codecId, prio)

    player = pj.AudioMediaPlayer()
    player.createPlayer(config.tone_wav)  # loops by default
    calls: dict[int, Any] = {}
    recorders: dict[int, tuple[Any, Path]] = {}
    finished: list[int] = []  # disconnected calls whose recording must be closed
    rec_dir = Path(config.rec_dir)
    audio_states = {
        pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
        pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
        pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
        pj.PJSUA_CALL_MEDIA_NONE: "NONE",
        pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
    }

    def media_status(call: Any) -> str:
        info = call.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO:
                return audio_states.get(media.status, str(media.status))
        return "NONE"

    class PhoneCall(pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, handle: int, call_id: int = pj.PJSUA_INVALID_ID):
            super().__init__(account, call_id)
            self.handle = handle

        def onCallState(self, prm: Any) -> None:
            info = self.getInfo()
            emit(
                {
                    "event": "state",
                    "call": self.handle,
                    "state": info.stateText,
                    "code": info.lastStatusCode,
                    "reason": info.lastReason,
                    "remote": info.remoteUri,
                }
            )
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                finished.append(self.handle)

        def onCallMediaState(self, prm: Any) -> None:
            info = self.getInfo()
            for media in info.media:
                if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status not in (
                    pj.PJSUA_CALL_MEDIA_ACTIVE,
                    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD,
                    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
                ):
                    continue
                audio = self.getAudioMedia(media.index)
                if self.handle not in recorders:
                    path = rec_dir / f"call{self.handle}-heard.wav"
                    recorder = pj.AudioMediaRecorder()
                    recorder.createRecorder(str(path))
                    recorders[self.handle] = (recorder, path)
                player.startTransmit(audio)
                audio.startTransmit(recorders[self.handle][0])
            emit({"event": "media", "call": self.handle, "status": media_status(self)})

        def onCallTransferStatus(self, prm: Any) -> None:
            emit(
                {
                    "event": "xfer_status",
                    "call": self.handle,
                    "code": prm.statusCode,
                    "reason": prm.reason,
                    "final": bool(prm.finalNotify),
                }
            )
            prm.cont = True

    class Account(pj.Account):  # type: ignore[misc]
        def onRegState(self, prm: Any) -> None:
            emit({"event": "reg", "code": prm.code, "reason": prm.reason})

        def onIncomingCall(self, prm: Any) -> None:
            handle = len(calls) + 1
            call = PhoneCall(self, handle, prm.callId)
            calls[handle] = call
            emit({"event": "incoming", "call": handle, "remote": call.getInfo().remoteUri})
            if config.auto_answer:
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)

    acc_cfg = pj.AccountConfig()
    acc_cfg.idUri = f"sip:{config.user}@{config.registrar}"
    acc_cfg.regConfig.registrarUri = f"sip:{config.registrar}"
    acc_cfg.regConfig.timeoutSec = 600
    acc_cfg.regConfig.unregWaitMsec = 500
    acc_cfg.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", config.user, 0, config.password)
    )
    acc_cfg.natConfig.contactRewriteUse = 0
    acc_cfg.natConfig.viaRewriteUse = 0
    acc_cfg.natConfig.sdpNatRewriteUse = 0
    acc_cfg.natConfig.iceEnabled = False
    acc_cfg.mediaConfig.transportConfig.port = config.rtp_port
    acc_cfg.mediaConfig.transportConfig.portRange = config.rtp_count
    acc_cfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acc_cfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    account = Account()
    account.create(acc_cfg)

    def close_recording(handle: int) -> None:
        entry = recorders.pop(handle, None)
        if entry is not None:
            path = entry[1]
            del entry  # destroying the recorder writes the WAV header's final sizes ...
            deadline = time.monotonic() + 2.0
            while not _wav_complete(path) and time.monotonic() < deadline:
                ep.libHandleEvents(10)  # ... but later: conference port removal is queued
            emit({"event": "recorded", "call": handle, "path": str(path)})

    def op_param(unhold: bool = False) -> Any:
        op = pj.CallOpParam(True)
        if unhold:
            op.opt.flag = pj.PJSUA_CALL_UNHOLD
        return op

    def run_command(request: Event) -> Any:
        cmd = request["cmd"]
        call = calls.get(int(request.get("call", 0)))
        if cmd == "dial":
            handle = len(calls) + 1
            new = PhoneCall(account, handle)
            calls[handle] = new
            new.makeCall(request["uri"], op_param())
            return handle
        if cmd == "calls":
            return [
                {
                    "call": h,
                    "state": c.getInfo().stateText,
                    "media": media_status(c),
                    "remote": c.getInfo().remoteUri,
                }
                for h, c in calls.items()
                if c.isActive()
            ]
        if cmd == "quit":
            return None
        if call is None:
            raise ValueError(f"no call {request.get('call')}")
        if cmd == "answer":
            op = pj.CallOpParam()
            op.statusCode = int(request.get("code", 200))
            call.answer(op)
        elif cmd == "hangup":
            call.hangup(pj.CallOpParam())
        elif cmd == "hold":
            call.setHold(op_param())
        elif cmd == "unhold":
            call.reinvite(op_param(unhold=True))
        elif cmd == "xfer":
            call.xfer(request["uri"], op_param())
        elif cmd == "xfer_replaces":
            call.xferReplaces(calls[int(request["target"])], op_param())
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return None

    deadline = time.monotonic() + config.lifetime
    stdin = sys.stdin.buffer.fileno()
    pending = b""
    running = True
    while running and time.monotonic() < deadline:
        ep.libHandleEvents(10)
        while finished:
            close_recording(finished.pop(0))
        ready, _, _ = select.select([stdin], [], [], 0)
        if not ready:
            continue
        data = os.read(stdin, 65536)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            try:
                result = run_command(request)
                emit({"id": request["id"], "ok": True, "result": result})
            except Exception as exc:  # any pjsua error goes back to the test, not a crash
                emit({"id": request["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            if request["cmd"] == "quit":
                running = False

    # Close every recording before leaving: the test reads them after the phone stops.
    for handle in list(recorders):
        close_recording(handle)
    out.flush()
    # Skip libDestroy: it unregisters and waits on a PBX the test may already have stopped.
    os._exit(0)


if __name__ == "__main__":
    _agent(PjsuaConfig(**json.loads(sys.argv[1])))
