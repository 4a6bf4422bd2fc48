"""What importing modules in a fresh interpreter pulls in: the check that a package stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def assert_imports_leave_out(modules: str, heavy: set[str]) -> None:
    """``import sys, <modules>`` in a fresh Python loads none of ``heavy``."""
    code = (
        f"import sys, {modules};"
        f"bad = sorted({heavy!r} & set(sys.modules));"
        "assert not bad, bad; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
