"""Real ``redis-server`` processes for tests and benchmarks.

Tests that are about Redis behaviour (persistence, crashes, stalls, cluster
redirects) are only honest against the real server, and so are benchmarks, so
these helpers start ``redis-server`` on free loopback ports inside a given
directory (a test's temporary directory, the benchmark's scratch directory).

Cleanup of servers a test forgot, or could not, stop:

* ``stop()``/``kill()`` and the context managers stop servers explicitly.
* An ``atexit`` hook SIGKILLs every server still alive when the interpreter
  exits normally, which includes pytest finishing after Ctrl-C or a failure.
* On Linux each server is started with ``PR_SET_PDEATHSIG = SIGKILL``, so the
  kernel kills it if the test process dies without running ``atexit``
  (SIGKILL, SIGTERM, a segfault, an OOM kill).
* Servers stay in the caller's process group (no ``start_new_session``), so a
  Ctrl-C in the terminal or ``kill -- -PGID`` from a CI runner reaches them too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from harness._polling import wait_until
from harness._resp import HOST, ReplyError, call
from harness._tls import TlsFiles

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CLUSTER_TIMEOUT = 30.0
CLUSTER_SLOTS = 16384
# The cluster bus listens on port + 10000, which must stay a valid port.
_CLUSTER_BUS_OFFSET = 10000
_MAX_CLUSTER_PORT = 55000
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 30

_MISSING_BINARY = (
    "{name} not found on PATH. scripts/test installs it (apt-get install redis-server); "
    "run the test suite through it, and the benchmarks after it."
)


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is only reserved while probing, so a caller that loses the race
    must be ready to retry; ``RedisServer.start`` does that by itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _find_free_cluster_port() -> int:
    for _ in range(200):
        port = find_free_port()
        if port <= _MAX_CLUSTER_PORT and _port_is_free(port + _CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("could not find a free port pair for a cluster node and its bus")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        # Never skip: a suite that silently skips its Redis tests looks green
        # while testing nothing.
        raise RuntimeError(_MISSING_BINARY.format(name=name))
    return path


def _info_field(text: str, field: str) -> str | None:
    prefix = f"{field}:"
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def _tail(path: pathlib.Path, lines: int = _LOG_TAIL_LINES, *, since: int = 0) -> str:
    try:
        with path.open("rb") as file:
            file.seek(since)
            text = file.read().decode(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


_PR_SET_PDEATHSIG = 1


def death_signal_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux SIGKILL the child when this process dies.

    None where that cannot work (not Linux, not the main thread): there only the
    caller's own cleanup stops the child.
    """
    if not sys.platform.startswith("linux"):
        return None
    # PDEATHSIG fires when the *thread* that forked the child exits, not the
    # process; a server started from a short-lived worker thread would die
    # under the test. Only the main thread lives as long as the process, so
    # other threads rely on atexit alone.
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl, in which case the
        # signal will never come: give up instead of leaking a server.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


_live_lock = threading.Lock()
_live: set[RedisServer] = set()


def _kill_all_live() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        # SIGKILL rather than stop(): at exit nobody wants the data, and a
        # paused server would ignore SIGTERM until continued.
        server.kill()


atexit.register(_kill_all_live)


class _PortTaken(Exception):
    """The chosen port was grabbed by someone else before redis bound it."""


class RedisServer:
    """One ``redis-server`` process listening on ``127.0.0.1:port``.

    Create it with ``RedisServer.start``; each server needs its own
    ``workdir`` because the RDB/AOF files and ``redis.log`` live there.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        port: int,
        appendonly: bool,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.appendonly = appendonly
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.tls = tls
        """With certificates, the server speaks TLS only, and asks clients for theirs."""
        self._tls_context = tls.client_context() if tls is not None else None
        self.url = (
            f"rediss://{HOST}:{port}/0?{tls.url_query()}"
            if tls is not None
            else f"redis://{HOST}:{port}/0"
        )
        self.log_path = workdir / "redis.log"
        # Anything redis prints before its logfile is open (bad arguments)
        # goes to stdout; keep it for error messages.
        self.stdout_path = workdir / "redis.stdout"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @classmethod
    def start(
        cls,
        workdir: pathlib.Path,
        *,
        appendonly: bool = False,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> Self:
        """Start a server in ``workdir`` and wait until it answers ``PING``.

        With ``port=None`` a free port is chosen, and another one is tried if
        that port is taken before redis binds it. ``appendonly=True`` turns on
        the AOF with ``appendfsync always`` so that ``kill()`` loses no
        acknowledged write. ``extra_args`` are appended to the command line. ``tls``
        (``harness.make_certificates``) makes it a TLS-only server: its ``url`` is
        ``rediss://`` with redis-py's ssl parameters.

        Raises RuntimeError if ``redis-server`` is missing or does not start
        within ``START_TIMEOUT`` seconds (the message includes the log tail).
        """
        return cls._start(
            workdir,
            appendonly=appendonly,
            port=port,
            extra_args=extra_args,
            pick_port=find_free_port,
            tls=tls,
        )

    @classmethod
    def _start(
        cls,
        workdir: pathlib.Path,
        *,
        appendonly: bool,
        port: int | None,
        extra_args: Sequence[str],
        pick_port: Callable[[], int],
        tls: TlsFiles | None = None,
    ) -> Self:
        binary = _binary("redis-server")
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if port is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            chosen = port if port is not None else pick_port()
            server = cls(
                workdir, port=chosen, appendonly=appendonly, extra_args=extra_args, tls=tls
            )
            try:
                server._launch(binary)
            except _PortTaken:
                if attempt + 1 == attempts:
                    raise RuntimeError(
                        f"redis-server could not bind port {chosen}: already in use\n"
                        f"{server._logs()}"
                    ) from None
                continue
            return server
        raise AssertionError("unreachable")  # pragma: no cover

    def _command(self) -> list[str]:
        args = [
            "--port",
            str(self.port),
            "--bind",
            HOST,
            # No RDB snapshots: tests control persistence explicitly.
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--logfile",
            str(self.log_path),
        ]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        if self.tls is not None:
            args[1] = "0"  # no plain port
            args += [
                *("--tls-port", str(self.port)),
                *("--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)),
                *("--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "yes"),
            ]
        return [*args, *self.extra_args]

    def _launch(self, binary: str) -> None:
        # Logs are appended across restarts; only this launch's lines may
        # decide whether the port was taken.
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.stdout_path.open("ab") as out:
            proc = subprocess.Popen(
                [binary, *self._command()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=death_signal_preexec(),
            )
        self._proc = proc
        self._paused = False
        with _live_lock:
            _live.add(self)
        try:
            wait_until(
                lambda: self._ready(proc, log_offset),
                f"redis-server on port {self.port} answers PING",
                within=START_TIMEOUT,
                details=self._logs,
            )
        except BaseException:
            self.kill()
            raise

    def _ready(self, proc: subprocess.Popen[bytes], log_offset: int) -> bool:
        if proc.poll() is not None:
            proc.wait()
            if "Address already in use" in _tail(self.log_path, since=log_offset):
                raise _PortTaken
            raise RuntimeError(
                f"redis-server on port {self.port} exited with code "
                f"{proc.returncode} during startup\n{self._logs()}"
            )
        with contextlib.suppress(OSError, ReplyError):
            if call(self.port, "PING", timeout=0.5, tls=self._tls_context) == "PONG":
                # Another process may own this port and answer for us
                # while our redis is failing to bind it.
                info = call(self.port, "INFO", "server", timeout=1.0, tls=self._tls_context)
                if _info_field(str(info), "process_id") == str(proc.pid):
                    return True
                raise _PortTaken
        return False

    def _logs(self) -> str:
        return (
            f"--- {self.log_path} (tail) ---\n{_tail(self.log_path)}\n"
            f"--- {self.stdout_path} (tail) ---\n{_tail(self.stdout_path)}"
        )

    def _forget(self) -> None:
        self._proc = None
        self._paused = False
        with _live_lock:
            _live.discard(self)

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """True while the process exists; a paused server counts as running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def is_paused(self) -> bool:
        """True between ``pause()`` and ``resume()``."""
        return self.is_running and self._paused

    def stop(self) -> None:
        """Shut the server down gracefully (SIGTERM), SIGKILL after a timeout.

        Safe to call on a stopped, killed or paused server.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            # A stopped process keeps SIGTERM pending until it is continued.
            proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            proc.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server, like a crash: nothing is flushed or saved."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._forget()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, nothing answers."""
        proc = self._require_running()
        proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Continue a server frozen by ``pause()`` (SIGCONT)."""
        proc = self._require_running()
        proc.send_signal(signal.SIGCONT)
        self._paused = False

    def restart(self, *, keep_data: bool = True) -> None:
        """Stop the server if it runs, then start it again on the same port.

        ``keep_data=True`` keeps whatever persistence holds: with
        ``appendonly`` that is every acknowledged write, even after
        ``kill()``. Without AOF nothing is on disk, so a running server is
        asked to ``SAVE`` first; after ``kill()`` it comes back empty, as a
        crashed cache would. ``keep_data=False`` deletes the RDB and AOF files
        so it always comes back empty (a cluster node keeps its nodes.conf).
        """
        if self.is_running:
            if self._paused:
                self.resume()
            if keep_data and not self.appendonly:
                call(self.port, "SAVE", timeout=STOP_TIMEOUT, tls=self._tls_context)
        self.stop()
        if not keep_data:
            self._wipe_data()
        try:
            self._launch(_binary("redis-server"))
        except _PortTaken:
            raise RuntimeError(
                f"redis-server could not rebind port {self.port}: taken while it was down\n"
                f"{self._logs()}"
            ) from None

    def _wipe_data(self) -> None:
        (self.workdir / "dump.rdb").unlink(missing_ok=True)
        (self.workdir / "appendonly.aof").unlink(missing_ok=True)
        shutil.rmtree(self.workdir / "appendonlydir", ignore_errors=True)

    def _require_running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} is not running")
        return proc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self.is_paused else "running" if self.is_running else "stopped"
        return f"<RedisServer {self.url} {state} in {self.workdir}>"


class RedisCluster:
    """A Redis Cluster of ``masters`` master-only nodes on loopback."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes
        self.url = f"redis://{HOST}:{nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        """Client ports of the nodes, seed node first."""
        return [node.port for node in self.nodes]

    @classmethod
    def start(cls, workdir: pathlib.Path, *, masters: int = 3) -> RedisCluster:
        """Start the nodes in ``workdir/node1..N``, create the cluster, wait until ok.

        Returns once every node reports ``cluster_state:ok`` and knows all
        nodes, so clients can connect right away. ``redis-cli --cluster
        create`` needs at least 3 masters.
        """
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        redis_cli = _binary("redis-cli")
        workdir = workdir.resolve()
        nodes: list[RedisServer] = []
        try:
            for index in range(1, masters + 1):
                nodedir = workdir / f"node{index}"
                # Started one after another so that each pick sees the ports
                # (and bus ports) of the nodes already running as taken.
                nodes.append(
                    RedisServer._start(
                        nodedir,
                        appendonly=False,
                        port=None,
                        extra_args=[
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            str(nodedir / "nodes.conf"),
                            "--cluster-node-timeout",
                            "2000",
                        ],
                        pick_port=_find_free_cluster_port,
                    )
                )
            cluster = cls(nodes)
            cluster._create(redis_cli)
            cluster._wait_ok()
        except BaseException:
            for node in nodes:
                node.kill()
            raise
        return cluster

    def _create(self, redis_cli: str) -> None:
        result = subprocess.run(
            [
                redis_cli,
                "--cluster",
                "create",
                *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLUSTER_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _wait_ok(self) -> None:
        wanted = {
            "cluster_state": "ok",
            "cluster_slots_assigned": str(CLUSTER_SLOTS),
            "cluster_known_nodes": str(len(self.nodes)),
        }
        pending = list(self.nodes)
        last = ""

        def all_ok() -> bool:
            nonlocal last
            while pending:
                try:
                    last = str(call(pending[0].port, "CLUSTER", "INFO", timeout=1.0))
                except (OSError, ReplyError):
                    return False
                if not all(_info_field(last, k) == v for k, v in wanted.items()):
                    return False
                pending.pop(0)
            return True

        wait_until(
            all_ok,
            "every cluster node is ok",
            within=CLUSTER_TIMEOUT,
            interval=0.02,
            details=lambda: (
                f"node on port {pending[0].port}; last CLUSTER INFO:\n{last}\n{pending[0]._logs()}"
            ),
        )

    def stop(self) -> None:
        """Stop every node; safe to call more than once."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisCluster {self.url} ports={self.ports}>"
