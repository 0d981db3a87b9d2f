"""The ``floodwall`` command: serve the demo, and act on users and networks from a terminal.

Operator commands act on the store named by ``FLOODWALL_REDIS_URL`` (or ``--redis-url``)
under ``FLOODWALL_KEY_PREFIX`` (or ``--key-prefix``), through the same service as the admin
API, and are audited the same way. An action that no running app received (none follows
that store and prefix) is stored, and says so in a warning on stderr. Output is readable by
default, with every id, reason and actor escaped (``floodwall.core.display``), and exact JSON
with ``--json``; bad input exits non-zero with one line.

The modules, in the order a command passes through them:

- ``arguments``: the argument types and the one-line usage error;
- ``parser``: every command and its options;
- ``session``: the settings from the options, the store opened, one command run on it;
- ``acting`` and ``reading``: the commands that change something, and those that look;
- ``answer``: what a command found or did, with the store and the default limits there;
- ``text`` and ``as_json``: the readable and the ``--json`` form of each answer;
- ``output``: the answer on stdout, the warnings and the audit lines on stderr;
- ``entry``: ``main``, and each failure turned into its exit status.
"""

from __future__ import annotations

from floodwall.cli.entry import main

__all__ = ["main"]
