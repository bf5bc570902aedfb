"""``python -m client`` as a user runs it: a child process against the service in a child process."""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from client._cli import EXIT_INTERRUPTED, EXIT_NOT_SERVING, EXIT_PIPE_CLOSED
from server.services.files import FileProcessedResult
from server.services.orders import OrderProcessedResult, OrderView
from tests.client.conftest import ROOT, ServerProcess, cli_env, popen

# A stream the service needs many seconds for: the CLI is interrupted long before it ends.
LONG_FILES = ["hello.txt", *["large.bin"] * 999]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def rill(server: ServerProcess | str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    address = server if isinstance(server, str) else server.address
    return subprocess.run(
        [sys.executable, "-m", "client", "--address", address, *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def unused_address() -> str:
    """An address nobody listens on: a port the system picked, bound and released again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_json_lines_parse_one_by_one(server_process: ServerProcess) -> None:
    done = rill(server_process, "orders", "process", "a", "b", "c", "--json")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    results = [OrderProcessedResult.model_validate_json(line) for line in lines]
    assert [result.order_id for result in results] == ["a", "b", "c"]
    assert all(json.loads(line)["status"] == "processed" for line in lines)
    assert done.stderr == ""


def test_without_a_terminal_results_are_plain_lines_and_no_bar(server_process: ServerProcess) -> None:
    done = rill(server_process, "files", "process", "hello.txt", "missing.txt")

    assert done.returncode == 0, done.stderr
    hello, missing = done.stdout.splitlines()
    assert hello.startswith("hello.txt  completed  12 bytes  sha256 ")
    assert missing == "missing.txt  not_found"
    assert not ANSI.search(done.stdout)
    assert "━" not in done.stdout


def test_on_a_terminal_a_progress_bar_shows_count_and_rate(server_process: ServerProcess) -> None:
    controller, terminal = pty.openpty()
    try:
        with popen(
            [
                sys.executable,
                "-m",
                "client",
                "--address",
                server_process.address,
                "orders",
                "process",
                "x",
                "y",
            ],
            stdout=terminal,
            stderr=terminal,
        ) as process:
            os.close(terminal)
            terminal = -1
            output = b""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], deadline - time.monotonic())
                if not ready:
                    break
                try:
                    chunk = os.read(controller, 65536)
                except OSError as error:  # EIO: the terminal's other end closed
                    if error.errno != errno.EIO:
                        raise
                    break
                if not chunk:
                    break
                output += chunk
            assert process.wait(timeout=30) == 0
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)

    screen = ANSI.sub("", output.decode(errors="replace"))
    assert "x  processed  3 items" in screen
    assert "y  processed  3 items" in screen
    assert "2/2" in screen
    assert "/s" in screen
    assert "━" in screen


def test_get_an_order(server_process: ServerProcess) -> None:
    assert rill(server_process, "orders", "process", "order-7").returncode == 0

    done = rill(server_process, "orders", "get", "order-7", "--json")

    assert done.returncode == 0, done.stderr
    order = OrderView.model_validate_json(done.stdout)
    assert (order.order_id, order.customer_id) == ("order-7", "customer_order-7")
    human = rill(server_process, "orders", "get", "order-7")
    assert human.stdout.startswith("order-7  processed  customer customer_order-7")


def test_not_found_prints_the_status_and_exits_69(server_process: ServerProcess) -> None:
    done = rill(server_process, "--request-id", "req-cli-404", "orders", "get", "never-processed")

    assert done.returncode == 64 + 5
    assert "NOT_FOUND" in done.stderr
    assert "never-processed" in done.stderr
    assert "req-cli-404" in done.stderr
    assert done.stdout == ""


def test_invalid_argument_prints_the_field_violations_and_exits_67(server_process: ServerProcess) -> None:
    done = rill(server_process, "orders", "process", "fine", "", "--json")

    assert done.returncode == 64 + 3
    assert "INVALID_ARGUMENT" in done.stderr
    assert "  order_ids[1]: String should have at least 1 character" in done.stderr.splitlines()
    assert done.stdout == ""


def test_a_path_outside_the_storage_is_invalid(server_process: ServerProcess) -> None:
    done = rill(server_process, "files", "process", "hello.txt", "../../etc/passwd")

    assert done.returncode == 67
    assert "  file_ids[1]: must not contain '..' segments" in done.stderr.splitlines()


def test_a_passed_deadline_exits_68(server_process: ServerProcess) -> None:
    done = rill(server_process, "--timeout", "0.3", "files", "process", "--json", *LONG_FILES)

    assert done.returncode == 64 + 4, done.stderr
    assert "DEADLINE_EXCEEDED" in done.stderr


def test_no_server_exits_78_after_the_retries() -> None:
    done = rill(unused_address(), "--max-attempts", "2", "health")

    assert done.returncode == 64 + 14
    assert "UNAVAILABLE" in done.stderr
    assert "attempt 2" in done.stderr, "a retry is announced"


def test_health(server_process: ServerProcess) -> None:
    serving = rill(server_process, "health")
    assert (serving.returncode, serving.stdout) == (0, "SERVING\n")

    as_json = rill(server_process, "health", "files.v1.FileService", "--json")
    assert json.loads(as_json.stdout) == {"service": "files.v1.FileService", "status": "SERVING"}

    unknown = rill(server_process, "health", "no.such.Service")
    assert unknown.returncode == 69
    assert "no.such.Service" in unknown.stderr
    assert EXIT_NOT_SERVING == 4  # documented for a service that is known but not serving


@pytest.mark.parametrize(
    "args",
    [
        ["orders", "process"],  # no ids
        ["orders", "frobnicate", "a"],
        ["--timeout", "-1", "health"],
        ["--cacert", "/no/such/ca.pem", "health"],
        ["--cert", __file__, "health"],  # a certificate without its key
        ["--header", "no-colon", "health"],
    ],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    done = rill("127.0.0.1:9", *args)

    assert done.returncode == 2, (done.stdout, done.stderr)


@pytest.mark.parametrize("args", [["--help"], ["orders", "process", "--help"]])
def test_help_shows_flags_as_flags_not_as_options_taking_a_bool(args: list[str]) -> None:
    # typer 0.29 shows a flag as `--tls <bool>`, and `--tls true` then fails as an unknown command.
    done = subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        env={**cli_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    flags = [line for line in done.stdout.splitlines() if re.search(r"--(tls|trace|json)\b(?!-)", line)]
    assert flags, done.stdout
    assert [line for line in flags if "<bool>" in line] == []


def test_without_the_cli_extra_the_command_line_says_what_to_install() -> None:
    # As if typer were not installed (the library's `client` extra without `cli`).
    program = "import sys; sys.modules['typer'] = None; from client.__main__ import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert done.stderr.strip() == "rill: the command line needs typer: pip install 'rill-grpc[cli]'"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


PROCESS_FILES = "files.v1.FileService/ProcessFiles"


def test_sigint_mid_stream_cancels_and_exits_130(server_process: ServerProcess) -> None:
    cancelled_before = server_process.handled(PROCESS_FILES, "CANCELLED")
    request_id = f"req-sigint-{uuid.uuid4().hex[:8]}"
    args = ["--request-id", request_id, "files", "process", "--json", *LONG_FILES]
    with popen(
        [sys.executable, "-m", "client", "--address", server_process.address, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As a terminal would start it: a test run started in the background (`cmd &` in a script,
        # nohup) ignores SIGINT, children inherit that, and Python then never raises KeyboardInterrupt.
        preexec_fn=_default_sigint,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        assert first, f"the command line ended before its first result: {process.stderr.read()}"
        FileProcessedResult.model_validate_json(first)
        process.send_signal(signal.SIGINT)
        # A bound against a hang only: the stream it interrupts would take minutes.
        stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "cancelled after" in stderr, "the user is told"
    assert "Traceback" not in stderr
    results = [FileProcessedResult.model_validate_json(line) for line in stdout.splitlines()]
    assert len(results) < len(LONG_FILES) - 1, "the first line was read above; the rest never came"
    server_process.wait_handled(PROCESS_FILES, "CANCELLED", more_than=cancelled_before)


def test_a_closed_stdout_cancels_the_stream(server_process: ServerProcess) -> None:
    cancelled_before = server_process.handled(PROCESS_FILES, "CANCELLED")
    request_id = f"req-pipe-{uuid.uuid4().hex[:8]}"
    args = ["--request-id", request_id, "files", "process", "--json", *LONG_FILES]
    with popen(
        [sys.executable, "-m", "client", "--address", server_process.address, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.close()  # like `| head -1`
        assert process.wait(timeout=30) == EXIT_PIPE_CLOSED

    server_process.wait_handled(PROCESS_FILES, "CANCELLED", more_than=cancelled_before)
