"""The redis-server harness itself, against real servers."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness import RedisCluster, RedisServer, find_free_port, wait_until

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def client(server: RedisServer, *, timeout: float = 2.0) -> redis.Redis:
    # No retries: redis-py retries timeouts by default, which would turn a
    # single "does it answer?" probe into several.
    return redis.Redis.from_url(
        server.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def process_alive(pid: int) -> bool:
    # A killed server whose new parent never reaps it stays a zombie, which
    # os.kill(pid, 0) would still report as alive.
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path) as srv:
        yield srv


@pytest.fixture
def aof_server(tmp_path: pathlib.Path) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path, appendonly=True) as srv:
        yield srv


def test_find_free_port_is_bindable() -> None:
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_ping_stop(server: RedisServer, tmp_path: pathlib.Path) -> None:
    assert server.is_running
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.workdir == tmp_path.resolve()
    with client(server) as r:
        assert r.ping() is True
        assert r.config_get("save") == {"save": ""}

    server.stop()
    assert not server.is_running
    assert server.pid is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    server.stop()  # idempotent
    server.kill()  # idempotent too


def test_kill_then_restart_keeps_aof_data(aof_server: RedisServer) -> None:
    port = aof_server.port
    with client(aof_server) as r:
        r.set("survivor", "yes")

    aof_server.kill()
    assert not aof_server.is_running
    aof_server.restart(keep_data=True)

    assert aof_server.port == port
    with client(aof_server) as r:
        assert r.get("survivor") == b"yes"


def test_restart_without_data_comes_back_empty(aof_server: RedisServer) -> None:
    with client(aof_server) as r:
        r.set("gone", "1")
    aof_server.restart(keep_data=False)
    with client(aof_server) as r:
        assert r.dbsize() == 0


def test_graceful_restart_without_aof_keeps_data(server: RedisServer) -> None:
    with client(server) as r:
        r.set("saved", "1")
    server.restart()
    with client(server) as r:
        assert r.get("saved") == b"1"


def test_pause_times_out_and_resume_answers(server: RedisServer) -> None:
    server.pause()
    assert server.is_paused
    with client(server, timeout=0.3) as r, pytest.raises(redis.TimeoutError):
        r.ping()

    server.resume()
    assert not server.is_paused
    with client(server) as r:
        assert r.ping() is True


def test_missing_binary_is_an_error_not_a_skip(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="scripts/test"):
        RedisServer.start(tmp_path)


@pytest.mark.parametrize("ending", ["thread-then-exit", "sigkill"])
def test_no_orphan_when_owner_process_ends(tmp_path: pathlib.Path, ending: str) -> None:
    # A server started from a worker thread gets no parent-death signal, so
    # after a normal exit only the atexit hook can stop it; a SIGKILLed owner
    # runs no atexit, so only the parent-death signal can.
    script = textwrap.dedent(
        """
        import os, pathlib, signal, sys, threading
        sys.path.insert(0, sys.argv[1])
        from harness import RedisServer
        started = []
        def start():
            started.append(RedisServer.start(pathlib.Path(sys.argv[2])))
        if sys.argv[3] == "sigkill":
            start()
        else:
            worker = threading.Thread(target=start)
            worker.start()
            worker.join()
        print(started[0].pid, flush=True)
        if sys.argv[3] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(REPO_ROOT), str(tmp_path), ending],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.stdout.strip().isdigit(), result.stderr
    pid = int(result.stdout)
    try:
        wait_until(lambda: not process_alive(pid), f"redis-server {pid} is gone", within=5.0)
    except TimeoutError:
        os.kill(pid, 9)
        pytest.fail(f"redis-server {pid} outlived its owner ({ending})")


def test_cluster_has_all_slots_on_three_masters(tmp_path: pathlib.Path) -> None:
    with RedisCluster.start(tmp_path, masters=3) as cluster:
        assert len(cluster.nodes) == 3
        assert len(set(cluster.ports)) == 3
        assert cluster.url == f"redis://127.0.0.1:{cluster.ports[0]}"

        for node in cluster.nodes:
            with client(node) as r:
                info = r.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                assert "cluster_state:ok" in text
                assert "cluster_slots_assigned:16384" in text

        with client(cluster.nodes[0]) as r:
            ranges = r.execute_command("CLUSTER", "SLOTS")
        covered = sorted(slot for start, end, *_ in ranges for slot in range(start, end + 1))
        assert covered == list(range(16384))
        owners = {int(owner[1]) for _, _, owner, *_ in ranges}
        assert owners == set(cluster.ports)

        rc = redis.RedisCluster.from_url(cluster.url)
        try:
            for key in ("a", "b", "c", "user:42"):
                rc.set(key, key)
                assert rc.get(key) == key.encode()
        finally:
            nodes = list(rc.nodes_manager.nodes_cache.values())
            rc.close()
            # redis-py 8.1's RedisCluster.close() leaves the per-node pools'
            # sockets open, which filterwarnings=error turns into a failure.
            for cluster_node in nodes:
                if cluster_node.redis_connection is not None:
                    cluster_node.redis_connection.connection_pool.disconnect()

    for node in cluster.nodes:
        assert not node.is_running
