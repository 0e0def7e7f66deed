#!/usr/bin/env python3
"""Set up and run smartbank with nothing but Python 3.11+.

    python3 dev.py run     # create .venv, install, start the platform on embedded PostgreSQL
    python3 dev.py test    # create .venv, install (and Debian's Chromium for the browser tests, with
                           # apt, when missing), run lint, type checks and the whole test suite

Both commands create the virtual environment in ./.venv on first use and reinstall only when
pyproject.toml or requirements.lock change. Everything else is done by the `smartbank` command.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".smartbank-install"
LOCK = ROOT / "requirements.lock"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "requirements.lock"):
        path = ROOT / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by an older Python
        sys.exit(f"smartbank needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"Creating virtual environment in {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except Exception as exc:  # report and stop: nothing else can be done here
            sys.exit(
                f"Could not create a virtual environment ({exc}). On Debian/Ubuntu install the "
                "python3-venv package for your Python version, then run this command again."
            )
    fingerprint = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check"]
    _run(*pip, "install", "--quiet", "--upgrade", "pip")
    constraint = ["--constraint", LOCK] if LOCK.exists() else []
    _run(*pip, "install", "--quiet", *constraint, "--editable", f"{ROOT}[dev]")
    STAMP.write_text(fingerprint)


def run(extra: list[str]) -> NoReturn:
    ensure_venv()
    os.chdir(ROOT)
    # The platform takes this process's place, so signals (Ctrl-C, a service manager's SIGTERM) reach
    # it, and it shuts down cleanly (the embedded PostgreSQL too) instead of being left behind. The
    # program is the venv's own, its arguments a list: no shell is involved.
    os.execv(BIN / "smartbank", [str(BIN / "smartbank"), "up", *extra])  # noqa: S606


CHROMIUM = Path("/usr/bin/chromium")
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # from fonts-wqy-microhei
BROWSER_PACKAGES = ("chromium", "fonts-wqy-microhei")  # the browser tests' Chromium, and a CJK font


def ensure_browser() -> None:
    """The browser tests drive Debian's Chromium (a browser is never downloaded): install it with
    apt when it is missing and this user may (root, or password-less sudo)."""
    if CHROMIUM.exists() and CJK_FONT.exists():
        return
    if not shutil.which("apt-get"):
        print(f"warning: {CHROMIUM} is missing and apt-get is not available: browser tests will fail", flush=True)
        return
    sudo: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo") or subprocess.call(["sudo", "-n", "true"], stderr=subprocess.DEVNULL) != 0:
            print(f"warning: {CHROMIUM} is missing; run: sudo apt-get install {' '.join(BROWSER_PACKAGES)}", flush=True)
            return
        sudo = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(*sudo, "apt-get", "update", "-q", env=env)
    _run(*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *BROWSER_PACKAGES, env=env)


def test(extra: list[str]) -> int:
    ensure_venv()
    ensure_browser()
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    steps: list[list[str]] = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "lint-imports")],
        [str(BIN / "mypy")],
        [str(BIN / "python"), "-m", "pytest", *extra],
    ]
    for step in steps:
        print("+", " ".join(step[:1] + step[1:]), flush=True)
        code = subprocess.call(step, cwd=ROOT, env=env)
        if code != 0:
            print(f"FAILED: {' '.join(step)} exited {code}", flush=True)
            return code
    return 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    return run(extra) if command == "run" else test(extra)


if __name__ == "__main__":
    sys.exit(main())
