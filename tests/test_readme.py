"""The README's code runs as shown."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.client.conftest import ROOT, cli_env


def _python_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


def test_the_library_snippet_runs_as_a_program_and_prints_each_result() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _python_block_after("## The library in short")],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["a", "b"]
