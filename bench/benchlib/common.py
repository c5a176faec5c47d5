"""What every benchmark needs: ports, pypbx processes, SIPp result parsing, CPU and memory
sampling, percentiles, and the table + JSON-line output convention.

Output convention: a human table on stdout, and one JSON object per measured figure (one
step of one target) on stderr, so `2>figures.jsonl` collects what a later run compares with.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
SCENARIOS = BENCH / "scenarios"
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from peers.pbx import PbxProcess  # noqa: E402
from peers.ports import PortAllocator  # noqa: E402
from peers.sipp import Sipp, SippResult  # noqa: E402

__all__ = [
    "BENCH",
    "SCENARIOS",
    "BenchPbx",
    "BenchPorts",
    "BenchSipp",
    "Table",
    "emit",
    "fd_count",
    "fd_kinds",
    "percentile",
    "provision_sip_extensions",
    "response_times",
    "rss_kib",
    "scenario",
    "session_cpu_seconds",
    "sipp_counts",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def scenario(name: str) -> str:
    """Absolute path of a bench scenario (peers.sipp takes absolute paths as they are)."""
    return str(SCENARIOS / name)


def _one_benchmark_at_a_time() -> TextIO:
    """Hold an exclusive lock for the life of this process, waiting for any other holder.

    Two benchmarks at once would skew each other's figures, and their port choices can
    collide: pypbx binds the RTP range it was given lazily, call by call, so the other
    process sees those ports free until then. The lock goes when the process exits.
    """
    path = Path(tempfile.gettempdir()) / "pypbx-bench.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        print(f"waiting for another benchmark (pid {holder}) to finish", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class BenchPorts(PortAllocator):
    """Ports above the kernel's ephemeral range, where neither tests nor clients live.

    Integration tests take their ports from per-worker slices of 10000-32000 and outgoing
    sockets get ephemeral ports (32768-60999 on Linux by default), so what lies above both is
    free for benchmarks, which also need wide RTP ranges (four ports per relayed call) that
    a test slice of ~1400 ports could not hold. Every port is still checked bindable, and
    benchmarks take turns (a lock file), since pypbx binds its RTP range only call by call.
    """

    def __init__(self, low: int = 61000, high: int = 65535) -> None:
        super().__init__(worker=0)
        self._lock = _one_benchmark_at_a_time()
        try:
            text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
            low = max(low, int(text[1]) + 1)
        except (OSError, IndexError, ValueError):
            pass
        if high - low < 1000:
            raise SystemExit(f"only {high - low} ports above the ephemeral range; need 1000+")
        self._lo = low
        self._hi = high
        # a random even start, so two benchmarks started together rarely probe the same ports
        self._next = low + (os.getpid() * 7919 % ((high - low) // 2)) // 2 * 2


class BenchPbx(PbxProcess):
    """pypbx for benchmarks: WARNING logging, a wide RTP range, and the event loop chosen
    explicitly (`--event-loop uvloop` or `asyncio`: pypbx's default takes uvloop whenever it
    is installed, so a run "without uvloop" has to say so)."""

    def __init__(
        self,
        workdir: Path,
        ports: PortAllocator,
        *,
        uvloop: bool = False,
        rtp_port_count: int = 1200,
        config: dict[str, dict[str, Any]] | None = None,
        relay_worker: bool | None = None,
    ) -> None:
        """`relay_worker`: None leaves pypbx's default; True hands calls to the relay worker
        after 0.5 s (so a short settle suffices), False keeps every call on the loop."""
        if relay_worker is not None:
            config = {**(config or {})}
            config["media"] = {
                **config.get("media", {}),
                "relay_worker": relay_worker,
                "relay_worker_after": 0.5,
            }
        super().__init__(
            workdir,
            ports,
            log_level="WARNING",
            rtp_port_count=rtp_port_count,
            config=config,
        )
        self.uvloop = uvloop
        self.relay_worker = relay_worker

    @property
    def label(self) -> str:
        label = "pypbx+uvloop" if self.uvloop else "pypbx"
        if self.relay_worker is not None:
            label += "+worker" if self.relay_worker else "-worker"
        return label

    def command(self) -> list[str]:
        return [*super().command(), "--event-loop", "uvloop" if self.uvloop else "asyncio"]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return session_cpu_seconds(self.pid)


class BenchSipp(Sipp):
    """peers.sipp.Sipp without the per-message trace, which costs SIPp time and disk at load.

    Errors are still logged (-trace_err), and so are response times when asked for.
    """

    def __init__(self, *args: Any, trace_messages: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not trace_messages:
            i = self.command.index("-trace_msg")
            del self.command[i : i + 3]  # -trace_msg -message_file FILE


def _stat_fields(pid: int | str) -> list[str]:
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, all its threads included."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def session_cpu_seconds(sid: int) -> float:
    """CPU seconds of every live process in session `sid` (a server and the workers it forked).

    Our servers run with start_new_session=True, so their session id is their own pid; for a
    single-process server (pypbx) this is just that process.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except OSError:
            continue  # exited meanwhile
        if int(fields[3]) == sid:  # fields[3] is field 6 of stat: the session id
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def rss_kib(pid: int) -> int:
    """VmRSS from /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """Open descriptors by what they point at: 'socket udp 127.0.0.1:5060', 'socket unix',
    'anon_inode:[eventpoll]', a path. A socket left open says which one it is."""
    kinds: dict[str, int] = {}
    names = _socket_names(pid)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        kind = target.split(":[", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        if kind == "socket":
            kind = f"socket {names.get(target[8:-1], '?')}"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _socket_names(pid: int) -> dict[str, str]:
    """Socket inode -> 'udp 127.0.0.1:5060' (or 'tcp ... LISTEN', 'unix'), from /proc/net."""
    names: dict[str, str] = {}
    for proto in ("udp", "tcp", "udp6", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            host, port = fields[1].split(":")
            if len(host) == 8:  # IPv4, little-endian hex
                host = ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0))
            state = " LISTEN" if proto.startswith("tcp") and fields[3] == "0A" else ""
            names[fields[9]] = f"{proto} {host}:{int(port, 16)}{state}"
    try:
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            names[fields[6]] = "unix" + (f" {fields[7]}" if len(fields) > 7 else "")
    except OSError:
        pass
    return names


class CpuMeter:
    """CPU seconds a target spent between start() and stop(), and the wall time it took."""

    def __init__(self, read: Callable[[], float]) -> None:
        self._read = read
        self._cpu0 = self._wall0 = 0.0
        self.cpu = self.wall = 0.0

    def start(self) -> None:
        self._cpu0, self._wall0 = self._read(), time.monotonic()

    def stop(self) -> None:
        self.cpu = self._read() - self._cpu0
        self.wall = time.monotonic() - self._wall0

    @property
    def utilisation(self) -> float:
        """Share of one core, 0..1 (more for multi-process targets)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def response_times(workdir: Path, rtd: str | None = None) -> list[float]:
    """Response times (ms) from SIPp's -trace_rtt files in `workdir`, optionally of one rtd."""
    samples: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")  # date_ms;response_time_ms;rtd_no
            if len(parts) >= 2 and parts[1] and (rtd is None or parts[2].strip() == rtd):
                samples.append(float(parts[1]))
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def sipp_counts(result: SippResult) -> tuple[int, int]:
    """(successful, failed) calls from SIPp's final screen."""
    ok = failed = 0
    for line in result.screen.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2].split()[0])
        if "Failed call" in line:
            failed = int(line.split("|")[2].split()[0])
    return ok, failed


def provision_sip_extensions(
    pbx: PbxProcess, users: Iterable[tuple[str, str]], workers: int = 8
) -> int:
    """AddConfig one SIP extension per (number, password), a few requests at a time."""
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(lambda u: pbx.add_sip_extension(u[0], u[1]), users))
    return len(done)


def emit(figures: dict[str, Any]) -> None:
    """One figure as a JSON line on stderr (the machine-readable half of the output)."""
    print(json.dumps(figures), file=sys.stderr, flush=True)


def ratio(value: float, reference: float) -> str:
    """`value / reference` for a table cell ('-' when either is missing or zero)."""
    if not reference or reference != reference or value != value:
        return "-"
    return f"{value / reference:.2f}x"


class Table:
    """A fixed-width table printed row by row, so a long run shows progress."""

    def __init__(self, columns: Sequence[tuple[str, int]]) -> None:
        self.columns = list(columns)
        print(" ".join(f"{name:>{width}}" for name, width in self.columns), flush=True)

    def row(self, *values: object) -> None:
        cells = []
        for (_, width), value in zip(self.columns, values, strict=True):
            text = f"{value:.2f}" if isinstance(value, float) else str(value)
            cells.append(f"{text:>{width}}")
        print(" ".join(cells), flush=True)


def udp_bound(port: int) -> bool:
    """True once something has bound UDP 127.0.0.1:`port` (our own bind attempt fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


_PLUMBING = ("asyncio/", "uvloop/", "runpy", "<module>", "pypbx/cli.py")


class PySpy:
    """py-spy sampling one process for a while, summarised as the functions time went to.

    `--format raw` writes collapsed stacks ("outer;...;leaf count"); idle samples (the loop
    waiting in epoll) are left out by py-spy, so the shares are of busy time.
    """

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.command = [self.exe, "record", "--pid", str(pid), "--format", "raw"]
        self.command += ["--output", str(output), "--rate", str(rate), "--nonblocking", "-F"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PySpy:
        if not Path(self.exe).exists():
            raise SystemExit("py-spy is not installed (pip install py-spy)")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        log = self.output.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def top(self, count: int = 5) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
        """(samples, [(function, self share)], [(function, inclusive share)]), largest first."""
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        try:
            lines = self.output.read_text().splitlines()
        except OSError:
            return 0, [], []
        for line in lines:
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            samples = int(n)
            frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
            frames = [f for f in frames if not f.startswith("thread ")]
            if not frames:
                continue
            total += samples
            own[frames[-1]] = own.get(frames[-1], 0) + samples
            for frame in set(frames):
                if any(skip in frame for skip in _PLUMBING):
                    continue  # the loop and the CLI hold every sample: not informative
                inclusive[frame] = inclusive.get(frame, 0) + samples

        def best(counts: dict[str, int]) -> list[tuple[str, float]]:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:count]
            return [(name, n / total) for name, n in ranked]

        return total, best(own), best(inclusive)

    def report(self, title: str, count: int = 5) -> dict[str, Any]:
        total, own, inclusive = self.top(count)
        print(f"py-spy {title}: {total} busy samples ({self.output})")
        for name, share in own:
            print(f"   self {100 * share:5.1f}%  {name}")
        for name, share in inclusive:
            print(f"  total {100 * share:5.1f}%  {name}")
        return {
            "samples": total,
            "self": [[n, round(s, 4)] for n, s in own],
            "inclusive": [[n, round(s, 4)] for n, s in inclusive],
        }


@contextlib.contextmanager
def workspace(keep: str | None) -> Iterator[Path]:
    """A scratch directory for logs and configs: `keep` to look at them afterwards."""
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="pypbx-bench-") as tmp:
            yield Path(tmp)


CALLER = ("1000", "pw-1000")  # the calling extension of the call benchmarks (user, password)
CALLEE = ("2000", "pw-2000")  # the called one, registered by the SIPp that answers


def register_callee(workdir: Path, ports: PortAllocator, remote: str, local_port: int) -> None:
    """REGISTER CALLEE from `local_port`, where a SIPp callee will then answer its calls."""
    result = Sipp(
        workdir,
        "register",
        local_port=local_port,
        control_port=ports.port(),
        remote=remote,
        service=CALLEE[0],
        auth=CALLEE,
        timeout=15,
    ).run()
    if not result.ok:
        raise SystemExit(result.describe())


def challenge_variables(challenge: bool) -> dict[str, str]:
    """-set variables that make bench/scenarios/uas_answer.xml challenge CALLER itself."""
    if not challenge:
        return {}
    return {"challenge": "yes", "auth_user": CALLER[0], "auth_pass": CALLER[1]}
