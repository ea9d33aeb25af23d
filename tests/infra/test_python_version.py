"""Production's Python is named once per tool, and they agree: the Bicep runtime, mypy, the Makefile, the README."""

from __future__ import annotations

import re
import subprocess
import tomllib

from tests.conftest import ROOT
from tests.infra.test_bicep import bicep

PRODUCTION = "3.13"  # the newest Python Flex Consumption supports as GA (README "Python version")


def test_the_function_app_runs_the_python_mypy_checks_and_make_test_installs() -> None:
    runtime = bicep("app/api.bicep")["resources"]["functionApp"]["config"]["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": PRODUCTION}
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"] == PRODUCTION
    makefile = (ROOT / "Makefile").read_text()
    assert f"PYTHON        ?= $(shell scripts/find-python.sh {PRODUCTION})" in makefile
    assert re.search(rf"Production runs \*\*Python {re.escape(PRODUCTION)}\*\*", (ROOT / "README.md").read_text())


def test_find_python_answers_an_interpreter_of_that_version() -> None:
    found = subprocess.run([str(ROOT / "scripts" / "find-python.sh"), PRODUCTION], capture_output=True, text=True,
                           check=False, timeout=120)
    assert found.returncode == 0, found.stderr
    version = subprocess.run([found.stdout.strip(), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True, timeout=60)
    assert version.stdout.strip() == PRODUCTION


def test_find_python_says_what_to_install_when_there_is_none() -> None:
    missing = subprocess.run([str(ROOT / "scripts" / "find-python.sh"), "3.99"], capture_output=True, text=True,
                             check=False, timeout=120)
    assert missing.returncode == 1
    assert "no Python 3.99 found: install it" in missing.stderr
