"""Reference servers run beside pypbx in the same benchmark invocation: Kamailio 5.6 (a C
stateful proxy and digest registrar) and Sippy's B2BUA (a Python B2BUA).

Figures from a shared 2-core machine are only comparable within one run, so each benchmark
measures these under the same load, right before or after pypbx, and prints the ratios.
Neither is a dependency: `--reference` selects them, the default takes whatever is
installed (bench/setup.sh installs both), and a missing one is skipped with a message.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from benchlib.common import BENCH, session_cpu_seconds, udp_bound, wait_until
from peers.ports import PortAllocator

__all__ = ["REFERENCES", "Kamailio", "SippyB2bua", "add_reference_argument", "chosen_references"]

KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
KAMAILIO_DBTEXT = Path("/usr/share/kamailio/dbtext/kamailio")
REFERENCES = ("kamailio", "sippy")


def kamailio_missing() -> str | None:
    if shutil.which("kamailio") is None:
        return "kamailio is not installed (bench/setup.sh: apt-get install kamailio)"
    if not (KAMAILIO_MODULES / "auth_db.so").is_file() or not KAMAILIO_DBTEXT.is_dir():
        return f"kamailio's auth_db/db_text modules are not in {KAMAILIO_MODULES}"
    return None


def sippy_missing() -> str | None:
    try:
        import sippy.b2bua_simple  # noqa: F401
    except ImportError:
        return "sippy is not installed in this venv (bench/setup.sh: pip install sippy)"
    return None


_MISSING = {"kamailio": kamailio_missing, "sippy": sippy_missing}


def add_reference_argument(parser: argparse.ArgumentParser, supported: Iterable[str]) -> None:
    names = ",".join(supported)
    parser.add_argument(
        "--reference",
        default="installed",
        help=f"reference servers to run beside pypbx: a list from {names}, 'none', "
        "or 'installed' (default: every one that is installed)",
    )


def chosen_references(value: str, supported: Iterable[str]) -> list[str]:
    """The references to run; says on stdout why any requested or supported one is skipped."""
    supported = list(supported)
    if value == "none":
        return []
    wanted = supported if value == "installed" else [n for n in value.split(",") if n]
    chosen = []
    for name in wanted:
        if name not in supported:
            raise SystemExit(f"--reference {name}: this benchmark supports {','.join(supported)}")
        missing = _MISSING[name]()
        if missing:
            print(f"skipping reference {name}: {missing}")
        else:
            chosen.append(name)
    return chosen


class _Server:
    """A reference server process in its own session (so workers it forks are counted)."""

    label = "server"

    def __init__(self, workdir: Path, ports: PortAllocator) -> None:
        self.workdir = workdir
        self.sip_port = ports.port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.label}.log"

    @property
    def sip_address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files before start()."""

    def start(self, timeout: float = 15.0) -> _Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.proc
        if not wait_until(lambda: proc.poll() is not None or udp_bound(self.sip_port), timeout):
            self.stop()
            raise SystemExit(f"{self.label} did not bind {self.sip_address}\n{self.log_tail()}")
        if proc.poll() is not None:
            raise SystemExit(f"{self.label} exited with {proc.returncode}\n{self.log_tail()}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return session_cpu_seconds(self.pid)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
                return

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# Registrar (REGISTER: www digest, usrloc in memory) and stateful proxy (INVITE: proxy digest,
# lookup of the callee's registration, record-route, t_relay) in one script, as a small PBX
# front would be configured; credentials are HA1 hashes in a db_text subscriber table, as
# pypbx stores HA1 too.
_KAMAILIO_CFG = """#!KAMAILIO
debug={debug}
log_stderror=yes
memdbg=5
memlog=5
children={children}
listen=udp:127.0.0.1:{port}
disable_tcp=yes
auto_aliases=no
alias="127.0.0.1:{port}"
mpath="{modules}/"

loadmodule "db_text.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "auth_db.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "password_column", "ha1")
modparam("auth_db", "use_domain", 0)
modparam("auth_db", "load_credentials", "")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        if (!www_authorize("$td", "subscriber")) {{
            www_challenge("$td", "1");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!proxy_authorize("$fd", "subscriber")) {{
            proxy_challenge("$fd", "1");
            exit;
        }}
        consume_credentials();
        record_route();
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


class Kamailio(_Server):
    """Kamailio 5.6 as digest registrar + stateful proxy, `children` UDP workers.

    One worker by default: pypbx is one process on one core, so one worker is the fair
    per-core comparison (Kamailio also runs a few helper processes; their CPU counts too).
    """

    label = "kamailio"

    def __init__(
        self,
        workdir: Path,
        ports: PortAllocator,
        users: Iterable[tuple[str, str]],
        *,
        children: int = 1,
        realm: str = "127.0.0.1",
    ) -> None:
        super().__init__(workdir, ports)
        self.users = list(users)
        self.children = children
        self.realm = realm
        self.db = workdir / "db"
        self.config_path = workdir / "kamailio.cfg"

    def prepare(self) -> None:
        if self.db.exists():
            shutil.rmtree(self.db)
        shutil.copytree(KAMAILIO_DBTEXT, self.db)
        rows = []
        for i, (user, password) in enumerate(self.users, start=1):
            ha1 = hashlib.md5(f"{user}:{self.realm}:{password}".encode()).hexdigest()
            ha1b = hashlib.md5(f"{user}@{self.realm}:{self.realm}:{password}".encode()).hexdigest()
            rows.append(f"{i}:{user}:{self.realm}:{password}:{ha1}:{ha1b}\n")
        with (self.db / "subscriber").open("a") as table:
            table.writelines(rows)
        self.config_path.write_text(
            _KAMAILIO_CFG.format(
                children=self.children,
                port=self.sip_port,
                modules=KAMAILIO_MODULES,
                db=self.db,
                debug=int(os.environ.get("BENCH_KAMAILIO_DEBUG", "1")),
            )
        )
        (self.workdir / "run").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        # -DD: the creator stays in the foreground (workers are still forked); -E: log to stderr
        return [
            "kamailio",
            "-f",
            str(self.config_path),
            "-DD",
            "-E",
            "-n",
            str(self.children),
            "-m",
            "128",
            "-M",
            "16",
            "-Y",
            str(self.workdir / "run"),
            "-w",
            str(self.workdir),
        ]


class SippyB2bua(_Server):
    """Sippy's b2bua_simple (PyPI `sippy`): every INVITE goes to one fixed next hop.

    It has no registrar and checks no credentials itself (its digest auth needs RADIUS), so
    the callee challenges and Sippy relays the challenge and the credentials end to end
    (its UA.pass_auth, set by benchlib/sippy_b2bua.py): the caller sees the same 401 round
    as with pypbx, while the check itself happens at the callee.
    """

    label = "sippy"

    def __init__(self, workdir: Path, ports: PortAllocator, next_hop: str) -> None:
        super().__init__(workdir, ports)
        self.next_hop = next_hop

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(BENCH / "benchlib" / "sippy_b2bua.py"),
            "-f",
            "-l",
            "127.0.0.1",
            "-p",
            str(self.sip_port),
            "-n",
            self.next_hop,
            "-L",
            str(self.workdir / "sippy-sip.log"),
        ]
