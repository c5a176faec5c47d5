"""`pypbx serve`: open the store, start SIP, RTP and the HTTP API, run until cancelled."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import secrets
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from pypbx import __version__
from pypbx.api.server import API_SERVICE, create_app
from pypbx.api.settings import ApiSettings
from pypbx.config import Settings
from pypbx.media.endpoint import MediaManager
from pypbx.media.fetch import AudioResolver
from pypbx.media.recorder import repair_recordings
from pypbx.media.relay_offload import RelayOffloader
from pypbx.media.sounds import hold_music
from pypbx.media.tts import EspeakEngine, SpeechCache
from pypbx.messaging.email import EmailSender
from pypbx.messaging.smpp import SmppGateway
from pypbx.net.localaddr import is_wildcard
from pypbx.net.stack import SipStack
from pypbx.notify import Notifier, NotifySettings
from pypbx.pbx.call_media import MediaOptions
from pypbx.pbx.dialplan import rules_from_toml
from pypbx.pbx.notification_urls import NotificationUrls
from pypbx.pbx.security import protection
from pypbx.pbx.service import Pbx
from pypbx.pbx.states import HistoryResult
from pypbx.store.passwords import hash_password
from pypbx.store.records import OfficeUserRecord
from pypbx.store.store import Store

log = logging.getLogger("pypbx")


async def ensure_admin(store: Store, password: str | None) -> None:
    """On first start with an empty store, create the office user `admin`."""
    if await store.count_users() > 0:
        return
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(12)
    await store.add_user(
        OfficeUserRecord(
            username="admin",
            password_hash=hash_password(password),
            may_use_api=True,
            is_admin=True,
        )
    )
    if generated:
        # Printed once, on purpose: it is stored only as a hash.
        log.warning("created office user 'admin' with generated password: %s", password)
    else:
        log.info("created office user 'admin' with the configured password")


def _enable_media(
    settings: Settings, pbx: Pbx, email_sender: EmailSender | None
) -> tuple[AudioResolver, Notifier, Path]:
    """Play, Speak, Record, SendDTMF: their directories, downloader, speech engine and the
    webhook sender for RecordCompleted."""
    media_settings = settings.media
    media_dirs = [Path(d) for d in media_settings.media_dirs] or [settings.data_dir / "media"]
    recordings_dir = Path(media_settings.recordings_dir or settings.data_dir / "recordings")
    for directory in (*media_dirs, recordings_dir):
        directory.mkdir(parents=True, exist_ok=True)
    repaired = repair_recordings(recordings_dir)
    if repaired:
        log.warning("repaired %d recordings cut short by an earlier stop", repaired)
    resolver = AudioResolver(
        media_dirs,
        timeout=media_settings.download_timeout,
        max_bytes=media_settings.download_max_bytes,
    )
    speech = SpeechCache(EspeakEngine(default_voice=media_settings.tts_voice))
    notes = settings.notifications
    notifier = Notifier(
        NotifySettings(
            timeout=notes.timeout,
            retries=notes.retries,
            retry_delay=notes.retry_delay,
            secret=notes.secret or None,
            user_agent=settings.sip.user_agent,
        )
    )
    http_host, http_port = settings.http_listen

    def public_url() -> str:
        if settings.http_api.public_url:
            return settings.http_api.public_url
        host = settings.media.advertised_address or settings.sip.advertised_address
        if host is None:
            host = "127.0.0.1" if is_wildcard(http_host) else http_host
        return f"http://{host}:{http_port}" if ":" not in host else f"http://[{host}]:{http_port}"

    pbx.enable_media(
        resolver,
        speech,
        notifier,
        MediaOptions(
            recordings_dir=recordings_dir,
            public_url=public_url,
            dtmf_duration_ms=media_settings.dtmf_duration_ms,
            dtmf_pause_ms=media_settings.dtmf_pause_ms,
        ),
        email=lambda: email_sender,
        notification_urls=NotificationUrls(
            pbx.store,
            call_changed=settings.http_api.call_changed_url,
            route_interception=settings.http_api.route_interception_url,
        ),
        smpp=_smpp_gateway(settings),
        smpp_incoming_extension=settings.smpp.incoming_api_extension,
    )
    return resolver, notifier, recordings_dir


def _tune_garbage_collector() -> None:
    """Calls allocate many short-lived objects, so the default thresholds ran a full
    collection every few seconds under load, walking everything loaded at start-up and
    stalling the loop for ~280 ms (the call-setup p99). Start-up objects are frozen out of
    collection and collections are made rarer: at 60 calls/s GC CPU fell by two thirds
    and p99 INVITE->200 from ~200 ms to ~70 ms (bench/call_setup.py).

    Rarer, not rare: a call's objects hold each other in reference cycles (its legs point
    at it, their callbacks at them), so they are freed only when the generation they
    reached is collected, and a call outlives the young generations. With the oldest
    generation considered only every 20 x 20 young collections, the soak grew ~3 MiB a
    minute for over an hour. So the oldest generation is considered after every middle
    one, and CPython's own rule (a full collection only once the objects promoted since
    the last one reach a quarter of those that survived it) keeps its cost in proportion.
    The soak's memory is flat now; with 50 calls up, collections take 3-12 ms, but one that
    frees a few hundred calls' garbage at once (the first full one after start) stalls the
    loop for 100-200 ms. Freeing calls by reference counting, i.e. breaking those cycles,
    is what would end that (bench/soak.py; SIGUSR1 reports the collector's pauses and the
    cycles it finds, pypbx/diagnostics.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 5, 1)


def _raise_file_limit() -> None:
    """Each call holds four RTP sockets (and a TCP phone one more): the common soft limit of
    1024 open files would cap a PBX near 250 calls, so take what the hard limit allows, as
    Asterisk and FreeSWITCH do at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files limited to %d (cannot raise it: %s)", soft, exc)
            return
        log.debug("open files limit raised from %d to %d", soft, wanted)


def _smpp_gateway(settings: Settings) -> SmppGateway | None:
    """The SMSC connection when `[smpp]` names a host (the PBX starts and stops it)."""
    smpp = settings.smpp.settings()
    return SmppGateway(smpp) if smpp is not None else None


async def serve(settings: Settings) -> None:
    _raise_file_limit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.db_url)
    try:
        closed = await store.close_unfinished_history(HistoryResult.ERROR.value, datetime.now(UTC))
        if closed:
            log.warning("closed %d calls cut by an earlier stop as Error", closed)
        await ensure_admin(store, settings.admin_password)
        await _run(settings, store)
    finally:
        log.debug("shutting down: store")
        await store.close()


async def _run(settings: Settings, store: Store) -> None:
    sip_host, sip_port = settings.sip_listen
    stack = SipStack(
        sip_host,
        sip_port,
        advertised=settings.sip.advertised_address,
        user_agent=settings.sip.user_agent,
    )
    media = MediaManager(
        sip_host,
        settings.rtp_ports[0],
        settings.rtp_ports[1],
        advertised_address=settings.media.advertised_address,
    )
    if settings.media.relay_worker:
        media.offloader = RelayOffloader(media, after=settings.media.relay_worker_after)
    guard = protection(settings.security)
    pbx = Pbx(
        stack,
        store,
        media,
        realm=settings.sip.realm,
        nonce_secret=await Pbx.nonce_secret(store),
        nonce_lifetime=settings.sip.nonce_lifetime,
        ring_timeout=settings.sip.ring_timeout,
        min_expires=settings.sip.min_expires,
        max_expires=settings.sip.max_expires,
        default_expires=settings.sip.default_expires,
        media_address=settings.media.advertised_address,
        digest_algorithms=tuple(settings.sip.digest_algorithms),
        hold_music=hold_music(
            Path(settings.media.hold_music) if settings.media.hold_music else None
        ),
        inband_dtmf=settings.media.inband_dtmf,
        dial_plan=rules_from_toml(settings.dialplan.rules),
        rtp_timeout=float(settings.media.rtp_timeout),
        auth_bans=guard.sip_bans,
        flood_limits=guard.flood,
        call_limits=guard.calls,
    )
    pbx.b2bua.session_timers.configure(
        session_expires=settings.sip.session_expires, min_se=settings.sip.session_min_se
    )
    email = settings.email.settings()
    email_sender = EmailSender(email) if email is not None else None
    resolver, notifier, recordings_dir = _enable_media(settings, pbx, email_sender)
    try:
        await pbx.start()
    except OSError as exc:
        raise OSError(exc.errno, f"SIP {sip_host}:{sip_port}: {exc.strerror}") from exc
    if media.offloader is not None:
        await media.offloader.start()
    _tune_garbage_collector()
    api_settings = ApiSettings(
        auth_required=settings.http_api.auth_required,
        allowed_networks=list(settings.http_api.allowed_networks),
        denied_addresses=list(settings.http_api.denied_addresses),
        domain=settings.http_api.domain,
        realm=settings.sip.realm,
        keep_sip_passwords=settings.security.keep_sip_passwords,
        recordings_dir=recordings_dir,
        default_api_extension=settings.http_api.default_api_extension,
    )
    app = create_app(
        api_settings, store, pbx, email_sender=email_sender, sms_router=lambda: pbx.messages
    )
    app[API_SERVICE].authenticator.bans = guard.api_bans
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    http_host, http_port = settings.http_listen
    site = web.TCPSite(runner, http_host, http_port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await pbx.stop()
        await notifier.close()
        await resolver.close()
        raise OSError(exc.errno, f"HTTP {http_host}:{http_port}: {exc.strerror}") from exc
    shown = "127.0.0.1" if is_wildcard(http_host) else http_host
    log.info(
        "pypbx %s ready: SIP %s:%d (UDP+TCP), HTTP API http://%s:%d/?command=ListActiveCalls",
        __version__,
        sip_host,
        stack.port,
        shown,
        http_port,
    )

    try:
        # Runs until cancelled: the CLI cancels serve() on SIGINT/SIGTERM.
        await asyncio.Event().wait()
    finally:
        log.info("shutting down: hanging up %d active calls", len(pbx.b2bua.calls))
        # one stage at a time, each logged: a shutdown that hangs says where
        for stage, close in (
            ("calls and SIP", pbx.stop),
            ("notifications", notifier.close),
            ("resolver", resolver.close),
            ("HTTP API", runner.cleanup),
            ("media", media.close),
        ):
            log.debug("shutting down: %s", stage)
            await close()
