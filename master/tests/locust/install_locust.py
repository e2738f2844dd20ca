#!/usr/bin/env python3
"""Locust from PyPI in its own virtual environment, target/locust-venv, for
master/tests/it/locust.rs, which compares our --csv files with the ones Locust writes.

Creates the venv when missing and pip-installs the pinned Locust when it is missing or
at another version; then prints the venv's python. Installed once: later runs only
check the version. `.ci/run` calls it in its setup step, so pip does not run beside
the tests. To check our files against a newer Locust, raise LOCUST and run the test.

Exit 0 with the python's path on stdout; else exit 1 with the reason on stderr.
"""

import pathlib
import subprocess
import sys
import venv

LOCUST = "2.47.0"
ROOT = pathlib.Path(__file__).resolve().parents[3]
VENV = ROOT / "target" / "locust-venv"
PYTHON = VENV / "bin" / "python"


def installed() -> str | None:
    if not PYTHON.is_file():
        return None
    out = subprocess.run(
        [str(PYTHON), "-c", "import locust; print(locust.__version__)"],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def main() -> int:
    if installed() == LOCUST:
        print(PYTHON)
        return 0
    try:
        if not PYTHON.is_file():
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    except Exception as e:  # noqa: BLE001 (any reason is worth saying)
        print(f"cannot create {VENV}: {e} (on Debian: apt-get install python3-venv)", file=sys.stderr)
        return 1
    print(f"installing locust=={LOCUST} into {VENV} (once)", file=sys.stderr, flush=True)
    pip = subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--timeout", "30", f"locust=={LOCUST}"],
        capture_output=True, text=True, check=False,
    )
    if pip.returncode != 0:
        tail = " | ".join(pip.stderr.strip().splitlines()[-3:])
        print(f"pip could not install locust=={LOCUST}: {tail}", file=sys.stderr)
        return 1
    if installed() != LOCUST:
        print(f"locust=={LOCUST} installed but not importable from {PYTHON}", file=sys.stderr)
        return 1
    print(PYTHON)
    return 0


if __name__ == "__main__":
    sys.exit(main())
