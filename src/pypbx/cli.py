"""The `pypbx` command: parse flags, build Settings, configure logging, run the app.

pypbx.app is imported only when `serve` runs, so `pypbx --version` and `--help` stay fast
and work even when optional runtime pieces fail to import.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from pypbx import CORE, __version__
from pypbx.config import ConfigError, Settings, load_settings
from pypbx.core_build import STALE

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pypbx",
        description="An open-source IP PBX with an Ozeki-compatible HTTP API.",
    )
    parser.add_argument("--version", action="version", version=f"pypbx {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the PBX (SIP, RTP and the HTTP API) until SIGINT/SIGTERM",
        description=(
            "Run the PBX. Settings come from these flags, then PYPBX_* environment "
            "variables, then the TOML file (--config or PYPBX_CONFIG), then defaults."
        ),
    )
    serve.add_argument("--config", metavar="FILE.toml", help="TOML configuration file")
    serve.add_argument("--data-dir", metavar="DIR", help="state directory (default ./data)")
    serve.add_argument(
        "--db", dest="db_url", metavar="URL", help="SQLAlchemy URL (default SQLite in DIR)"
    )
    serve.add_argument("--sip-listen", metavar="HOST:PORT", help="SIP UDP+TCP (0.0.0.0:5060)")
    serve.add_argument("--http-listen", metavar="HOST:PORT", help="HTTP API (0.0.0.0:7780)")
    serve.add_argument("--rtp-ports", metavar="LO-HI", help="RTP port range (10000-20000)")
    serve.add_argument(
        "--admin-password",
        metavar="PW",
        help="password of the HTTP API user 'admin' (prefer PYPBX_ADMIN_PASSWORD: "
        "command lines are visible to other local users)",
    )
    serve.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO (default), WARNING...")
    serve.add_argument(
        "--event-loop",
        metavar="LOOP",
        help="auto (default: uvloop if installed), uvloop or asyncio",
    )
    return parser


# Libraries whose chatter drowns ours, with the most verbose level they may log at even when
# we run at DEBUG: aiosqlite logs every cursor operation, SQLAlchemy every statement at INFO.
QUIET_LOGGERS = {
    "aiosqlite": logging.INFO,
    "asyncio": logging.INFO,
    "alembic": logging.INFO,
    "alembic.runtime.plugins": logging.WARNING,
    "sqlalchemy": logging.WARNING,
}


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; noisy libraries are held at their QUIET_LOGGERS floor."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    ours = logging.getLevelName(level)
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(ours, floor))


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when chosen or available ("auto"): the benchmarks measured 15-30 % less
    CPU per call and per relayed RTP packet with it (bench/README.md). None: asyncio's."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("pypbx: event_loop = uvloop, but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


async def run_until_signalled(settings: Settings) -> None:
    """Run pypbx.app.serve() and cancel it on SIGINT/SIGTERM for a clean shutdown.

    Cancellation lets serve() close sockets, hang up calls and flush history in its
    finally blocks; exiting 0 afterwards is what service managers expect from SIGTERM.
    """
    from pypbx import app  # lazy: see module docstring
    from pypbx.diagnostics import GcPauses, MemoryReport

    loop = asyncio.get_running_loop()
    serve_task = asyncio.ensure_future(app.serve(settings))

    def on_signal(signum: int) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        serve_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(signum, on_signal, signum)
    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGUSR1 on Windows
        pauses = GcPauses()
        loop.add_signal_handler(signal.SIGUSR1, MemoryReport(pauses).log)
        pauses.install()
    with contextlib.suppress(asyncio.CancelledError):
        await serve_task


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = load_settings(args, os.environ)
    except ConfigError as exc:
        parser.error(str(exc))  # exits 2 with usage
    configure_logging(settings.log_level)
    logger.info("pypbx %s starting", __version__)
    logger.log(logging.WARNING if STALE in CORE else logging.INFO, "SIP core: %s", CORE)
    logger.debug("settings: %s", settings.redacted())
    try:
        loop_factory = event_loop_factory(settings.event_loop)
        logger.info("event loop: %s", "uvloop" if loop_factory is not None else "asyncio")
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run_until_signalled(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except OSError as exc:  # e.g. a port already in use: say so without a traceback
        logger.error("cannot run: %s", exc)
        return 1
    logger.info("pypbx stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
