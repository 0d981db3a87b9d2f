"""``python -m floodwall.cli``: the same command as the ``floodwall`` script."""

from __future__ import annotations

import sys

from floodwall.cli.entry import main

sys.exit(main())
