"""Start and stop the test bed's processes: by PID, with logs kept for failures.

Every server the test bed starts goes through :class:`Process`, so that a test
that starts something also stops exactly that, and a component that cannot
start fails with its own log in the message instead of a silent skip.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even if it crashes.

    A pjsua2 assertion aborts the whole pytest process without running fixture
    teardown; without this its servers would outlive it and hold their ports.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class TestbedError(RuntimeError):
    """A test-bed component could not start or answer; the message says why."""


def require(program: str) -> str:
    """Return the path of ``program`` or fail naming the Debian package to install."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        raise TestbedError(f"{program} not found on PATH: run 'make setup' (installs the test bed's Debian packages)")
    return path


class Process:
    """One child process started by the test bed, stopped by its own PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, why: str) -> TestbedError:
        return TestbedError(f"{self.name} (pid {self.pid}): {why}\n--- {self.log_path} ---\n{self.log_tail()}")

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise self.fail(f"exited with code {self.popen.returncode} before {what}")
            if ready():
                return
            time.sleep(0.05)
        raise self.fail(f"no {what} within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 5.0, resignal_after_s: float | None = None) -> None:
        """SIGTERM this PID, then SIGKILL it if it has not gone.

        ``resignal_after_s`` sends a second SIGTERM after that many seconds:
        baresip takes the first one as "hang up and unregister politely",
        which can wait for a peer that never answers, and the second one as
        "quit now" (still cleaner than SIGKILL, which loses its last log lines).
        """
        try:
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
                if resignal_after_s is not None:
                    try:
                        self.popen.wait(resignal_after_s)
                    except subprocess.TimeoutExpired:
                        os.kill(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout_s)
        finally:
            self._log.close()


def tcp_listening(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind((host, port))
                except OSError:
                    continue
                return port
    raise TestbedError(f"no port free for both UDP and TCP on {host}")


class Server(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


@contextmanager
def serving(server: S, what: str) -> Iterator[S]:
    """Start a test-bed server for a fixture and stop it after; one that cannot start fails the test (never skips)."""
    try:
        server.start()
    except TestbedError as exc:
        server.stop()
        pytest.fail(f"test bed: {what} did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
