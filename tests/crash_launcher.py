"""`oms serve` that dies like a kill -9 (``os._exit``: nothing flushed, nothing closed) at the
moment a test picks, for crash windows a random kill rarely hits:

    OMS_CRASH_BEFORE_STORE=<bytes>   as the FIX store is about to save sent messages one of which
                                     contains these bytes: after the batch's journal write, before
                                     the store's (and so before the socket's)

    python -m tests.crash_launcher serve --data-dir ...
"""
from __future__ import annotations

import os
import sys

from oms_trading.fix import store

_MARK = os.environ.get("OMS_CRASH_BEFORE_STORE", "").encode()
_save_sent = store.MessageStore.save_sent


def _dying_save_sent(self, messages, activity=True):
    if _MARK and any(_MARK in raw for _seq, raw, _event in messages):
        os.write(2, b"crash_launcher: dying before the store write\n")
        os._exit(137)
    return _save_sent(self, messages, activity)


store.MessageStore.save_sent = _dying_save_sent

if __name__ == "__main__":
    from oms_trading.cli import main
    sys.exit(main(sys.argv[1:]))
