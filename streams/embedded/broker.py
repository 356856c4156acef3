"""Start and stop the embedded Kafka-protocol broker (noida-db) as a subprocess.

Measured noida-db 0.2.3 behaviour this module relies on:

- ``up`` daemonises and returns once the port listens (~0.2 s); exit code 0.
- ``up`` on a data dir whose broker is already running prints "already
  running", exits 0 and ignores the port given (the old port stays), so
  :meth:`EmbeddedBroker.start` checks the running broker's address itself.
- ``up`` with the port taken (by anything) exits 1 and logs
  ``error: kafka: port N is already in use`` to ``DIR/noida.log``.
- ``status`` exits 0 when running, 1 when not; a stale control file left by
  a kill -9 is detected and ``up`` starts a fresh broker.
- ``down`` is synchronous and exits 0 even when nothing runs.
- ``status`` prints ``pid N``; after a kill -9 of that process ``up`` on the same data dir
  and port starts it again at once, with what its snapshot held: it rewrites ``kafka.json``
  at most once a second, from the state when each write begins, so what it acknowledged
  since it began its second-to-last write before the kill may be lost (README "Crashes of
  the whole box").
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

_STATUS_KAFKA = re.compile(r"^\s*\S+\s+kafka\s+(\S+):(\d+)\s*$", re.MULTILINE)
_STATUS_PID = re.compile(r"\bpid (\d+)\b")


class BrokerError(RuntimeError):
    """The embedded broker could not be started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.25) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def noida_executable() -> Path:
    """The noida-db launcher next to this interpreter, else the packaged binary."""
    beside = Path(sys.executable).parent / "noida-db"
    if beside.is_file():
        return beside
    packaged = Path(str(files("noida_db").joinpath("noida-db")))
    if packaged.is_file():
        return packaged
    found = shutil.which("noida-db")
    if found:
        return Path(found)
    raise BrokerError("noida-db not found: install the noida-db package")


class EmbeddedBroker:
    """One noida-db Kafka broker bound to ``host:port`` with its own data dir."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 9092) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "noida.log"

    def __repr__(self) -> str:
        return f"EmbeddedBroker({str(self.data_dir)!r}, {self.bootstrap!r})"

    def _run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(noida_executable()), *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of ``DIR/noida.log`` (minus the harmless GLIBC warning)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no noida.log)"
        kept = [line for line in text.splitlines() if "GLIBC_" not in line]
        return "\n".join(kept[-lines:])

    def running_address(self) -> tuple[str, int] | None:
        """(host, port) of the Kafka listener of the broker running for this data
        dir, or None if no broker runs there (or it runs without Kafka)."""
        res = self._run("status")
        if res.returncode != 0:
            return None
        match = _STATUS_KAFKA.search(res.stdout)
        return (match.group(1), int(match.group(2))) if match else None

    def pid(self) -> int | None:
        """Process id of the broker running for this data dir (``noida-db status``), or None."""
        res = self._run("status")
        match = _STATUS_PID.search(res.stdout) if res.returncode == 0 else None
        return int(match.group(1)) if match else None

    def answers(self) -> bool:
        """True while something accepts connections on our port: one TCP connect, cheap enough to
        ask every second (``is_running`` also asks ``noida-db status``, and needs the port too)."""
        return port_open(self.host, self.port)

    def is_running(self) -> bool:
        """True if a broker runs for this data dir and accepts connections on our port."""
        return self.running_address() == (self.host, self.port) and port_open(self.host, self.port)

    def start(self, timeout: float = 20.0) -> bool:
        """Start the broker; True if we started it, False if it was already running.

        Raises BrokerError if the broker does not come up within ``timeout``,
        if the port is taken, or if a broker for this data dir already runs on
        another address.
        """
        address = self.running_address()
        if address is not None:
            if address != (self.host, self.port):
                raise BrokerError(
                    f"noida-db for {self.data_dir} already runs on "
                    f"{address[0]}:{address[1]}, not {self.bootstrap}"
                )
            self._wait_port(open_=True, deadline=time.monotonic() + timeout)
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        res = self._run(
            "up",
            "--only",
            "kafka",
            "--kafka-port",
            str(self.port),
            "--host",
            self.host,
            timeout=timeout,
        )
        if res.returncode != 0:
            raise BrokerError(
                f"noida-db up failed (exit {res.returncode}) for {self!r}; noida.log:\n{self.log_tail()}"
            )
        self._wait_port(open_=True, deadline=time.monotonic() + timeout)
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the broker for this data dir (no-op if none runs); data is kept."""
        address = self.running_address()
        res = self._run("down", timeout=timeout)
        if res.returncode != 0:
            raise BrokerError(
                f"noida-db down failed (exit {res.returncode}): {res.stdout.strip()} {res.stderr.strip()}"
            )
        if address is not None:
            self._wait_port(open_=False, deadline=time.monotonic() + timeout, address=address)

    def _wait_port(self, *, open_: bool, deadline: float, address: tuple[str, int] | None = None) -> None:
        host, port = address or (self.host, self.port)
        while port_open(host, port) != open_:
            if time.monotonic() > deadline:
                state = "accept connections" if open_ else "close"
                raise BrokerError(
                    f"port {host}:{port} did not {state} in time; noida.log:\n{self.log_tail()}"
                )
            time.sleep(0.05)
