"""The spec's "Complete Example", run as a program with only its imports changed."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "docs" / "examples" / "complete_example.py"


def test_the_complete_example_prints_each_items_events_before_the_item() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        line
        for order in ("order1", "order2", "order3")
        for line in (
            f"Order {order} processed for customer customer_{order}",
            f"Analytics updated for order {order} in category electronics",
            f"Processed: {order}",
        )
    ]


def test_the_example_differs_from_the_spec_only_in_its_imports() -> None:
    source = EXAMPLE.read_text()

    assert "import mediator as cqrs\n" in source
    assert "from mediator import bootstrap\n" in source
    assert "from mediator.message_brokers import devnull\n" in source
    assert "di_container=di.Container()" in source
    assert "cqrs.requests" not in source


def test_the_behaviours_example_validates_times_and_retries() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "docs" / "examples" / "behaviours.py")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if not line.startswith("ProcessOrdersCommand took")] == [
        "recorded a after 2 attempts",
        "processed a",
        "recorded b after 2 attempts",
        "processed b",
        "refused: order_ids: each order may be named once",
    ]
    assert sum(line.startswith("ProcessOrdersCommand took") for line in lines) == 2
