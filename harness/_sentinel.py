"""A primary, a replica and three sentinels: Redis as a cloud gives it, on loopback.

Every process is a real ``redis-server`` (sentinels run it with ``--sentinel``), started
in its own folder of the given work directory and stopped by the same means as any
``RedisServer`` (``stop``, the ``atexit`` hook, the parent-death signal).
``kill_primary`` makes the sentinels fail over to the replica, as the death of a
cloud's primary does.
"""

from __future__ import annotations

import pathlib
from types import TracebackType
from typing import Final, Self

from harness._polling import wait_until
from harness._resp import HOST, ReplyError, call
from harness._servers import RedisServer

SERVICE: Final = "floodwall-primary"
"""The name the sentinels know the primary by (FLOODWALL_REDIS_SENTINEL_SERVICE)."""
DOWN_AFTER_MS: Final = 1000
"""How long a primary may not answer before a sentinel thinks it down."""
FAILOVER_TIMEOUT_MS: Final = 5000


class RedisSentinel(RedisServer):
    """One sentinel: ``redis-server sentinel.conf --sentinel``, with the config file (which
    a sentinel rewrites) in its work directory."""

    def _command(self) -> list[str]:
        return [
            str(self.workdir / "sentinel.conf"),
            "--sentinel",
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.workdir)),
            *("--daemonize", "no", "--protected-mode", "no", "--logfile", str(self.log_path)),
        ]


class RedisSentinelGroup:
    """A primary with one replica, watched by three sentinels (a quorum of two)."""

    def __init__(self, servers: list[RedisServer], sentinels: list[RedisSentinel]) -> None:
        self.servers = servers
        self.sentinels = sentinels

    @property
    def sentinel_addresses(self) -> str:
        """``host:port,...`` of the sentinels, as FLOODWALL_REDIS_SENTINELS takes them."""
        return ",".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)

    @classmethod
    def start(cls, workdir: pathlib.Path) -> RedisSentinelGroup:
        """Start the primary, its replica (in sync before this returns) and the sentinels
        (each knowing the replica and the other two before this returns)."""
        primary = RedisServer.start(workdir / "primary")
        group = cls([primary], [])
        try:
            replica = RedisServer.start(
                workdir / "replica", extra_args=["--replicaof", HOST, str(primary.port)]
            )
            group.servers.append(replica)
            wait_until(
                lambda: _replication(replica.port).get("master_link_status") == "up",
                "the replica is in sync with the primary",
                within=10,
            )
            for number in range(3):
                folder = workdir / f"sentinel-{number}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "sentinel.conf").write_text(
                    f"sentinel monitor {SERVICE} {HOST} {primary.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
                group.sentinels.append(RedisSentinel.start(folder))
            wait_until(group._settled, "the sentinels know the replica and each other", within=20)
        except BaseException:
            group.stop()
            raise
        return group

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            try:
                replicas = call(sentinel.port, "SENTINEL", "REPLICAS", SERVICE, timeout=1.0)
                others = call(sentinel.port, "SENTINEL", "SENTINELS", SERVICE, timeout=1.0)
            except (OSError, ReplyError):
                return False
            if not (isinstance(replicas, list) and len(replicas) == 1):
                return False
            if not (isinstance(others, list) and len(others) == len(self.sentinels) - 1):
                return False
        return True

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels name it now; ``None`` when none answers."""
        for sentinel in self.sentinels:
            try:
                address = call(
                    sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE, timeout=1.0
                )
            except (OSError, ReplyError):
                continue
            if isinstance(address, list) and len(address) == 2:
                return int(str(address[1]))
        return None

    def primary(self) -> RedisServer:
        """The server that is the primary now."""
        port = self.primary_port()
        [found] = [server for server in self.servers if server.port == port]
        return found

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary, like a crash; the killed server."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_for_failover(self, old: RedisServer, *, within: float = 30.0) -> RedisServer:
        """Wait until the sentinels name another primary and it says it is one; it."""

        def promoted() -> bool:
            port = self.primary_port()
            return port not in (None, old.port) and _replication(port or 0).get("role") == "master"

        wait_until(promoted, "the sentinels promote the replica", within=within, interval=0.1)
        return self.primary()

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _replication(port: int) -> dict[str, str]:
    try:
        text = str(call(port, "INFO", "replication", timeout=1.0))
    except (OSError, ReplyError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields
