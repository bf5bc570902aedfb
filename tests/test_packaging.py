"""The product as users install it: a wheel built from a fresh clone, installed into a fresh venv.

The copy of the tree is what ``git clone`` gives (tracked and new files, nothing ignored: no
generated protobuf code, no .venv). ``pip wheel --no-deps .`` builds it with build isolation, as a
user's pip would (the build requirements come from the index, or pip's cache). The wheel goes into
a new venv with ``pip install --no-deps``; its dependencies are not installed again (that would
take minutes): a ``.pth`` file appends this interpreter's site-packages to the venv's ``sys.path``.
That still proves the wheel's own contents: a plain path line in a ``.pth`` adds third-party
packages only (rill's editable install in .venv works through ``.pth`` files of its own, which
are processed only in a site directory, not in a directory merely on the path), the venv's own
site-packages (the wheel) comes first, the processes run in an empty directory (no checkout on
``sys.path``), and every test asserts where the modules were imported from.
"""

from __future__ import annotations

import email.parser
import json
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import typing
import zipfile

import pytest

from tests.client.conftest import ROOT, ServerProcess, cli_env

pytestmark = pytest.mark.timeout(300)


def _run(*args: str | pathlib.Path, cwd: pathlib.Path, timeout: float = 240) -> str:
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The wheel ``pip wheel --no-deps .`` builds from a fresh clone of the working tree."""
    clone = tmp_path_factory.mktemp("clone")
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    assert not list(clone.glob("protos/**/*_pb2.py")), "a fresh clone has no generated code"
    dist = tmp_path_factory.mktemp("dist")
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    _run(*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, ".", cwd=clone)
    (built,) = dist.glob("rill_grpc-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A new venv with the wheel installed (its dependencies reached through a ``.pth``; see above)."""
    home = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", home, cwd=home)
    python = home / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel, cwd=home)
    site = pathlib.Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=home).strip()
    )
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return home


def test_the_wheel_holds_the_generated_code_and_a_small_demo_storage(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        metadata = email.parser.Parser().parsestr(
            archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        )
    for module in (
        "orders/v1/orders_pb2.py",
        "orders/v1/orders_pb2.pyi",
        "files/v1/files_pb2.py",
        "__init__.py",
    ):
        assert f"protos/{module}" in names
    assert "rill_wire/__init__.py" in names
    assert "server/http/page.html" in names
    storage = {name: size for name, size in sizes.items() if "demo_storage" in name}
    assert "server/demo_storage/hello.txt" in storage
    assert sum(storage.values()) < 64 * 1024, storage
    assert metadata["Name"] == "rill-grpc"
    assert [r for r in metadata.get_all("Requires-Dist", []) if "extra ==" not in r] == ["pydantic<3,>=2.7"]
    assert {"server", "client", "cli", "rabbitmq", "all"} <= set(metadata.get_all("Provides-Extra", []))


def test_the_installed_wheel_imports_from_the_venv_and_the_mediator_needs_only_pydantic(
    venv: pathlib.Path,
) -> None:
    probe = (
        "import json, sys, mediator; light = sorted(sys.modules); "
        "import client, server.app, protos.orders.v1.orders_pb2 as orders; "
        "modules = (mediator, client, server.app, orders); "
        "print(json.dumps({'light': light, 'files': [module.__file__ for module in modules]}))"
    )
    found = json.loads(_run(venv / "bin" / "python", "-c", probe, cwd=venv))
    site = str(venv / "lib")
    assert all(file.startswith(site) for file in found["files"]), found["files"]
    heavy = (
        "grpc",
        "google",
        "fastapi",
        "server",
        "client",
        "protos",
        "opentelemetry",
        "di",
        "dependency_injector",
    )
    assert [name for name in found["light"] if name.split(".")[0] in heavy] == []


def test_python_m_server_from_the_wheel_serves_and_python_m_client_calls_it(venv: pathlib.Path) -> None:
    python = str(venv / "bin" / "python")
    server = ServerProcess(python=python, cwd=venv)
    try:
        lines = _run(
            python,
            "-m",
            "client",
            "--address",
            server.address,
            "orders",
            "process",
            "a",
            "b",
            "--json",
            cwd=venv,
        )
        files = _run(
            python, "-m", "client", "--address", server.address, "files", "process", "hello.txt", cwd=venv
        )
    finally:
        server.stop()
    results: list[dict[str, typing.Any]] = [json.loads(line) for line in lines.splitlines()]
    assert [(result["order_id"], result["status"]) for result in results] == [
        ("a", "processed"),
        ("b", "processed"),
    ]
    assert files.startswith("hello.txt  completed  12 bytes  sha256 ")
    assert server.process.returncode == 0, server.log
