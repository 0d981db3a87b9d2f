"""The harness shared by ``tests/`` and ``benchmarks/``: real Redis servers and
clusters, a MONITOR watcher, and one way to wait until something holds.

Not part of floodwall (it is not installed with it). pytest finds it through
``pythonpath`` in pyproject.toml; the benchmarks put the repository root on
``sys.path``, as they do for ``benchmarks`` itself.
"""

from harness._monitor import RedisMonitor, client_commands, parse_monitor_line
from harness._polling import wait_until, wait_until_async
from harness._resp import HOST
from harness._servers import RedisCluster, RedisServer, death_signal_preexec, find_free_port

__all__ = [
    "HOST",
    "RedisCluster",
    "RedisMonitor",
    "RedisServer",
    "client_commands",
    "death_signal_preexec",
    "find_free_port",
    "parse_monitor_line",
    "wait_until",
    "wait_until_async",
]
