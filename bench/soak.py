"""Soak test: calls at a steady rate for many minutes, watching pypbx's memory and descriptors.

SIPp places calls through pypbx at --rate calls/s, each held --hold seconds and (unless
--no-media) carrying a G.711 stream both ways from bench/benchlib/rtp_load.py through a
SIPp echo, for --minutes. pypbx's RSS (VmRSS of /proc/<pid>/status) and open descriptors
(/proc/<pid>/fd) are sampled before the load, every --interval seconds, and after the last
call has ended. The verdict fits a line through the samples taken under steady load, past
the warm-up (the first interval, and the first 30 % of the run): "flat" when it grows less
than max(2 % of RSS, 2 MiB) over that span, otherwise "growing" with the slope; sockets
must all be closed again at the end.

Without --rate the rate is half the highest call_setup rate pypbx sustains: taken from
--figures (JSON lines call_setup wrote) or, failing that, from a quick probe run here.
Not part of `make bench` (it takes --minutes); `make soak` runs it.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate R | --figures FILE] [--hold 10]
        [--no-media] [--interval 60] [--uvloop] [--relay-worker default|on|off]
        [--trace-memory FRAMES]

--trace-memory is for finding a leak: pypbx's log (pbx/pypbx.log under --workdir) then holds,
at every sample, the object types and allocation lines that grew since the previous one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib.common import (
    BENCH,
    CALLEE,
    CALLER,
    BenchPbx,
    BenchPorts,
    BenchSipp,
    Table,
    emit,
    fd_count,
    fd_kinds,
    register_callee,
    rss_kib,
    scenario,
    sipp_counts,
    workspace,
)
from call_setup import Target, run_pair

from peers.ports import PortAllocator

PROBE_RATES = (10, 20, 40, 80)
PROBE_SECONDS = 4.0


def rate_from_figures(path: Path) -> float | None:
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        mine = row.get("bench") == "call_setup" and row.get("target") == "pypbx"
        if mine and row.get("max_ok_rate"):
            return float(row["max_ok_rate"]) / 2
    return None


def probe_rate(root: Path, ports: PortAllocator, pbx: BenchPbx, uas_port: int) -> float:
    """Half the highest of PROBE_RATES at which every call_setup call completes."""
    target = Target("pypbx", pbx.sip_address, True, False, uas_port)
    best = 0
    for rate in PROBE_RATES:
        calls = int(rate * PROBE_SECONDS)
        result, _ = run_pair(root / f"probe-{rate}", ports, target, rate=rate, calls=calls)
        ok, failed = sipp_counts(result)
        if failed or ok < calls:
            break
        best = rate
    print(f"probe: every call completed up to {best or 'no'} calls/s")
    return max(best / 2, 1.0)


class Sampler:
    def __init__(self, pbx: BenchPbx, memory_reports: bool = False) -> None:
        self.pbx = pbx
        self.memory_reports = memory_reports
        self.start = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.table = Table(
            [("t s", 6), ("phase", 7), ("rss MiB", 8), ("fds", 5), ("calls", 6), ("cpu %", 6)]
        )
        self._cpu = (pbx.cpu_seconds(), self.start)

    def take(self, phase: str) -> dict[str, Any]:
        if self.memory_reports and phase != "start":  # the first one is only a baseline
            os.kill(self.pbx.pid, signal.SIGUSR1)
        now = time.monotonic()
        cpu = self.pbx.cpu_seconds()
        share = (cpu - self._cpu[0]) / max(now - self._cpu[1], 1e-9)
        self._cpu = (cpu, now)
        try:
            calls = len(self.pbx.active_calls())
        except Exception:  # an overloaded API is a finding, not a reason to stop sampling
            calls = -1
        sample: dict[str, Any] = {
            "t": round(now - self.start, 1),
            "phase": phase,
            "rss_kib": rss_kib(self.pbx.pid),
            "fds": fd_count(self.pbx.pid),
            "active_calls": calls,
            "cpu_share": round(share, 3),
        }
        self.samples.append(sample)
        self.table.row(
            sample["t"],
            phase,
            f"{sample['rss_kib'] / 1024:.1f}",
            sample["fds"],
            calls,
            f"{100 * share:.0f}" if phase != "start" else "-",
        )
        emit({"bench": "soak", **sample})
        return sample


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return 60 * cov / var


def relay_worker_started(pid: int) -> bool:
    """pypbx starts its relay worker at the first offload and keeps it, with a unix socket to
    it: one more descriptor at the end than at the start that is no leak."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pypbx.media.relay_worker" in command:
            return True
    return False


def verdict(samples: list[dict[str, Any]], interval: float) -> dict[str, Any]:
    # caches, pools and the allocator's arenas fill during the first minutes: fit the line
    # through the rest (from an interval in, and not before 30 % of the loaded time)
    load_end = max((s["t"] for s in samples if s["phase"] == "load"), default=0.0)
    warm = max(interval * 0.9, 0.3 * load_end)
    steady = [s for s in samples if s["phase"] == "load" and s["t"] >= warm]
    start, end = samples[0], samples[-1]
    result: dict[str, Any] = {
        "fds_start": start["fds"],
        "fds_end": end["fds"],
        "fds": f"{start['fds']} at start, {end['fds']} after the load",
    }
    if len(steady) < 2:
        result["memory"] = "unknown (fewer than two steady samples: run longer)"
        return result
    slope = slope_per_minute([(s["t"], s["rss_kib"]) for s in steady])
    span_min = (steady[-1]["t"] - steady[0]["t"]) / 60
    mean = sum(s["rss_kib"] for s in steady) / len(steady)
    growth = slope * span_min
    flat = growth < max(0.02 * mean, 2048)
    result |= {
        "rss_slope_kib_per_min": round(slope, 1),
        "rss_growth_kib": round(growth),
        "memory": "flat"
        if flat
        else f"growing {slope:.0f} KiB/min ({slope * 60 / 1024:.1f} MiB/h)",
        "fd_slope_per_min": round(slope_per_minute([(s["t"], s["fds"]) for s in steady]), 2),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long calls are placed")
    parser.add_argument("--rate", type=float, help="calls per second (default: half the max)")
    parser.add_argument("--figures", type=Path, help="call_setup JSON lines to take the max from")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds each call lasts")
    parser.add_argument("--no-media", action="store_true", help="signalling only, no RTP")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--uvloop", action="store_true", help="run pypbx on uvloop")
    parser.add_argument(
        "--relay-worker",
        choices=("default", "on", "off"),
        default="default",
        help="calls move to pypbx's relay worker process after 0.5 s (on), never (off), "
        "or as pypbx's own default has it (after 2 s)",
    )
    parser.add_argument("--workdir", metavar="DIR", help="keep logs and configs in DIR")
    parser.add_argument(
        "--trace-memory",
        type=int,
        metavar="FRAMES",
        help="have pypbx log, at every sample, what grew since the last (SIGUSR1, "
        "pypbx/diagnostics.py), with tracemalloc FRAMES deep unless 0; slows pypbx down",
    )
    args = parser.parse_args()
    if args.trace_memory:  # 0: object counts and containers only
        os.environ["PYTHONTRACEMALLOC"] = str(args.trace_memory)
    ports = BenchPorts()
    media = not args.no_media
    with workspace(args.workdir) as root:
        rate = args.rate or (rate_from_figures(args.figures) if args.figures else None)
        # calls up at once: rate x (hold + setup and teardown), doubled for slow moments;
        # four RTP ports each. An exhausted range would fail calls for the wrong reason.
        concurrent = int((rate or 40) * (args.hold + 10) * 2) + 50
        pbx = BenchPbx(
            root / "pbx",
            ports,
            uvloop=args.uvloop,
            rtp_port_count=min(4 * concurrent, 4000),
            config={} if media else {"media": {"rtp_timeout": 0}},
            relay_worker={"on": True, "off": False}.get(args.relay_worker),
        )
        pbx.start(timeout=120.0 if args.trace_memory else 20.0)
        os.environ.pop("PYTHONTRACEMALLOC", None)  # pypbx's alone, not rtp_load's
        procs: list[BenchSipp] = []
        load: subprocess.Popen[bytes] | None = None
        try:
            pbx.add_sip_extension(*CALLER)
            pbx.add_sip_extension(*CALLEE)
            # one callee port throughout: registering from another would leave a stale
            # binding behind, and pypbx would fork every call to it
            uas_port = ports.port()
            if rate is None:
                rate = probe_rate(root, ports, pbx, uas_port)
            total = max(1, int(rate * args.minutes * 60))
            print(
                f"soak: {rate:g} calls/s for {args.minutes:g} min ({total} calls, "
                f"{args.hold:g} s each, ~{rate * args.hold:.0f} up at once, "
                f"{'with' if media else 'no'} media)"
            )
            sampler = Sampler(pbx, memory_reports=args.trace_memory is not None)
            sampler.take("start")
            kinds_before = fd_kinds(pbx.pid)
            procs, load = start_load(root, ports, pbx, uas_port, args, rate, total, media)
            uac = procs[-1]
            next_sample = time.monotonic() + args.interval
            assert uac.proc is not None
            while uac.proc.poll() is None:
                time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
                if time.monotonic() >= next_sample:
                    sampler.take("load")
                    next_sample += args.interval
            result = uac.wait()
            time.sleep(3.0)  # the last BYEs, history rows and RTP port releases
            sampler.take("end")
            kinds_after = fd_kinds(pbx.pid)
            if relay_worker_started(pbx.pid):  # its control socket lives as long as pypbx
                kinds_before["socket unix"] = kinds_before.get("socket unix", 0) + 1
            extra_fds = {
                kind: n - kinds_before.get(kind, 0)
                for kind, n in kinds_after.items()
                if n > kinds_before.get(kind, 0)
            }
            ok, failed = sipp_counts(result)
            figures: dict[str, Any] = {"rate": rate, "calls": total, "ok": ok, "failed": failed}
            if load is not None:
                load.wait(timeout=60)
                out = root / "rtp_load.json"
                if out.exists():
                    rtp = json.loads(out.read_text())
                    figures |= {k: rtp[k] for k in ("sent", "loss_pct", "jitter_p99_ms")}
            figures |= verdict(sampler.samples, args.interval)
            print(
                f"calls: {ok} completed, {failed} failed"
                + (
                    f"; RTP loss {figures['loss_pct']} %, p99 added jitter "
                    f"{figures['jitter_p99_ms']} ms"
                    if "loss_pct" in figures
                    else ""
                )
            )
            figures["extra_fds_at_end"] = extra_fds
            # a second pooled database connection is not a leak; sockets left open would be
            sockets = sum(n for kind, n in extra_fds.items() if kind.startswith("socket"))
            figures["fds"] += (
                f" ({sockets} more sockets than at start)" if sockets else " (no socket left open)"
            )
            print(f"verdict: memory {figures['memory']}; descriptors {figures.get('fds', '?')}")
            if extra_fds:
                print(f"  descriptors open at the end that were not at the start: {extra_fds}")
            emit({"bench": "soak", "summary": figures})
        finally:
            if load is not None and load.poll() is None:
                load.kill()
                load.wait()
            for proc in procs:
                proc.stop()
            pbx.stop(timeout=30)
    return 0


def start_load(
    root: Path,
    ports: PortAllocator,
    pbx: BenchPbx,
    uas_port: int,
    args: argparse.Namespace,
    rate: float,
    total: int,
    media: bool,
) -> tuple[list[BenchSipp], subprocess.Popen[bytes] | None]:
    """The callee SIPp, rtp_load (with media) and the caller SIPp; the caller comes last."""
    register_callee(root, ports, pbx.sip_address, uas_port)
    duration = args.minutes * 60 + args.hold
    uas = BenchSipp(
        root,
        scenario("uas_answer.xml"),
        local_port=uas_port,
        control_port=ports.port(),
        media_port=ports.block(4) if media else None,
        rtp_echo=media,
        calls=total,
        timeout=duration + 120,
        extra=["-max_socket", "4096"],
    )
    uas.start()
    uas.wait_until_listening()
    load = None
    extra = ["-r", str(rate), "-l", str(int(rate * args.hold * 3) + 50), "-max_socket", "4096"]
    variables = {}
    if media:
        rtp_port = ports.block(2)
        ports_log = root / "far-ports.log"
        extra += ["-trace_logs", "-log_file", str(ports_log)]
        variables["rtp_port"] = str(rtp_port)
        load = subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "benchlib" / "rtp_load.py"),
                *("--port", str(rtp_port), "--ports-log", str(ports_log)),
                *("--duration", str(duration), "--stream-seconds", str(max(args.hold - 1.5, 0.5))),
                *("--out", str(root / "rtp_load.json")),
            ],
            stdout=subprocess.DEVNULL,
        )
    uac = BenchSipp(
        root,
        scenario("uac_media.xml" if media else "uac_setup.xml"),
        local_port=ports.port(),
        control_port=ports.port(),
        remote=pbx.sip_address,
        service=CALLEE[0],
        auth=CALLER,
        keys={"caller": CALLER[0]},
        variables=variables,
        calls=total,
        pause_ms=int(args.hold * 1000),
        timeout=duration + 90,
        extra=extra,
    )
    uac.start()
    return [uas, uac], load


if __name__ == "__main__":
    sys.exit(main())
