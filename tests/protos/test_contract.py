"""`make breaking` (part of `make lint`): the contract of the last release cannot break silently."""

from __future__ import annotations

import asyncio
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ORDERS = pathlib.Path("protos/orders/v1/orders.proto")


def copy_contracts(into: pathlib.Path) -> pathlib.Path:
    """The buf workspace (buf.yaml, protos/, third_party/) without the generated code."""
    shutil.copy(REPO / "buf.yaml", into / "buf.yaml")
    for proto in [*REPO.glob("protos/**/*.proto"), *REPO.glob("third_party/**/*.proto")]:
        target = into / proto.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(proto, target)
    return into


async def make_breaking(workspace: pathlib.Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "make",
        "-s",
        "breaking",
        f"BREAKING_INPUT={workspace}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_contracts_as_they_are_pass(tmp_path: pathlib.Path) -> None:
    code, output = await make_breaking(copy_contracts(tmp_path))
    assert code == 0, output


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            ("repeated string order_ids = 1;", "repeated string order_ids = 7;"),
            'field "1" with name "order_ids"',
        ),
        (("  int32 items_count = 4;\n", ""), 'field "4" with name "items_count"'),
        (("double total_amount = 3;", "string total_amount = 3;"), 'changed type from "double" to "string"'),
    ],
    ids=["renumbered", "removed", "retyped"],
)
async def test_a_broken_copy_of_a_proto_fails_the_check(
    tmp_path: pathlib.Path, change: tuple[str, str], complaint: str
) -> None:
    workspace = copy_contracts(tmp_path)
    proto = workspace / ORDERS
    text = proto.read_text(encoding="utf-8")
    old, new = change
    assert old in text
    proto.write_text(text.replace(old, new), encoding="utf-8")
    code, output = await make_breaking(workspace)
    assert code != 0, output
    assert complaint in output
