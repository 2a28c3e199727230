"""What the CLI tests share: invoking ``gankit`` in-process, the shape of a user error, plugins registered for a
while."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner, Result

from gankit.cli import main
from gankit.registry import registry


def run(*args: str | Path) -> Result:
    """``gankit ARGS`` through click's runner; exceptions other than exits propagate, so bugs show as failures."""
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2, exactly one line starting with 'Error:' holding every fragment, and no traceback."""
    assert_error_line(result.exit_code, result.output, *fragments)


def assert_error_line(exit_code: int, output: str, *fragments: str) -> str:
    """``assert_user_error`` for any process (a subprocess's return code and stderr); returns the 'Error:' line."""
    assert exit_code == 2, output
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, output
    for fragment in fragments:
        assert fragment in error_lines[0], output
    return error_lines[0]


def pytest_in(folder: Path, *, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a package's own test suite in a fresh interpreter, as its author would (``pytest`` in its folder);
    ``site`` is a folder the package was installed into with ``pip --target``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextlib.contextmanager
def registered(kind: str, name: str, cls: type) -> Iterator[None]:
    """A plugin registered at runtime for the duration of the block."""
    registry.register(kind, name, cls)
    try:
        yield
    finally:
        registry.unregister(kind, name)
