#!/usr/bin/env bash
# Install what the benchmarks need beyond `make peers` and `make install`, idempotently:
# Kamailio 5.6 (Debian package; the reference proxy/registrar, db_text is in the main
# package), and into the venv Sippy (the reference B2BUA), uvloop (--uvloop runs) and
# py-spy (--py-spy profiles), and atheris when it installs (fuzz.py). Nothing is installed that is already there, so `make bench`
# can call it on every run. BENCH_SKIP_REFERENCES=1 installs none of the references.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${VENV:-$here/../.venv}"
pip="$venv/bin/python -m pip"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_get="apt-get -o DPkg::Lock::Timeout=600"

if [ "${BENCH_SKIP_REFERENCES:-0}" != 1 ] && ! command -v kamailio >/dev/null 2>&1; then
    echo "bench/setup.sh: installing kamailio"
    $sudo $apt_get update
    $sudo env DEBIAN_FRONTEND=noninteractive $apt_get install -y --no-install-recommends kamailio
    # the Debian package enables a system service on machines with systemd; benchmarks run
    # their own instance on a loopback port, so a service listening on 5060 is not wanted
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
        $sudo systemctl disable --now kamailio || true
    fi
fi

missing=()
"$venv/bin/python" -c 'import uvloop' 2>/dev/null || missing+=("uvloop>=0.19")
[ -x "$venv/bin/py-spy" ] || missing+=("py-spy>=0.3.14")
if [ "${BENCH_SKIP_REFERENCES:-0}" != 1 ]; then
    "$venv/bin/python" -c 'import sippy.b2bua_simple' 2>/dev/null || missing+=("sippy>=2.2")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench/setup.sh: installing ${missing[*]} into $venv"
    $pip install --quiet "${missing[@]}"
fi
# atheris (coverage-guided fuzzing in fuzz.py) has no wheel for every Python; without it
# fuzz.py runs its built-in mutation fuzzer alone, so a failed install is not an error
if ! "$venv/bin/python" -c 'import atheris' 2>/dev/null; then
    $pip install --quiet "atheris>=2.3" || echo "bench/setup.sh: atheris not installed (fuzz.py will mutate only)"
fi
