"""floodwall's settings, read from ``FLOODWALL_*`` environment variables or passed in.

Bounds come from the rule book (``floodwall.core.rules``); this package adds what only
settings can get wrong: unknown variables, admin tokens, JWT algorithms and keys, trusted
proxies. A configuration that cannot work is refused when the settings are built, and no
error ever carries an input value: the ``ValidationError`` has every input removed (its
``str``, ``repr``, ``errors()`` and ``json()`` alike), each message names the variable it
is about, and ``settings_error`` turns any failure into the one line a surface shows.

- ``model``: ``FloodwallSettings``, its fields and the check of each;
- ``values``: text to values (lists, numbers, admin tokens, URLs, trusted proxies);
- ``signing``: JWT algorithms and the keys each needs;
- ``checks``: the settings that cannot work together;
- ``variables``: the ``FLOODWALL_*`` names, and the unknown ones;
- ``errors``: refusals without their inputs, and the one line a surface shows.
"""

from __future__ import annotations

from floodwall.settings.errors import settings_error
from floodwall.settings.model import FloodwallSettings
from floodwall.settings.signing import HMAC_KEY_BYTES
from floodwall.settings.values import redis_url_problem

__all__ = ["HMAC_KEY_BYTES", "FloodwallSettings", "redis_url_problem", "settings_error"]
