"""The harness shared by ``tests/`` and ``benchmarks/``: real Redis servers, clusters,
Sentinel groups and TLS servers, a MONITOR watcher, and one way to wait until something
holds.

Not part of floodwall (it is not installed with it). pytest finds it through
``pythonpath`` in pyproject.toml; the benchmarks put the repository root on
``sys.path``, as they do for ``benchmarks`` itself.
"""

from harness._monitor import RedisMonitor, client_commands, parse_monitor_line
from harness._polling import wait_until, wait_until_async
from harness._resp import HOST
from harness._sentinel import SERVICE, RedisSentinelGroup
from harness._servers import RedisCluster, RedisServer, death_signal_preexec, find_free_port
from harness._tls import TlsFiles, make_certificates

__all__ = [
    "HOST",
    "SERVICE",
    "RedisCluster",
    "RedisMonitor",
    "RedisSentinelGroup",
    "RedisServer",
    "TlsFiles",
    "client_commands",
    "death_signal_preexec",
    "find_free_port",
    "make_certificates",
    "parse_monitor_line",
    "wait_until",
    "wait_until_async",
]
