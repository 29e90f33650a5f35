"""Review of how reports are routed between FIX sessions (owners, drop copies, offline stores,
cancel on disconnect, mass cancel): the defects it found, one test each."""
from __future__ import annotations

from pathlib import Path

import pytest

from oms_trading.config import ConfigError, demo_config_text, parse_config


def _session(sender: str, target: str, account: str) -> str:
    return (f'[[fix.sessions]]\nsender_comp_id = "{sender}"\ntarget_comp_id = "{target}"\n'
            f'begin_string = "FIX.4.4"\naccount = "{account}"\n\n')


def test_two_sessions_with_one_session_name_are_refused():
    """The session name TARGET->SENDER owns orders, routes reports and names the journal's
    records: "DESK->X" + "OMS" and "DESK" + "X->OMS" are two CompID pairs (two store folders,
    both accepted) but one name. Over FIX, the second could then cancel the first's order by its
    ClOrdID and was sent the first's reports; the config now refuses the pair, naming both."""
    text = demo_config_text().replace(
        "[http]", _session("OMS", "DESK->X", "ACC1") + _session("X->OMS", "DESK", "ACC2") + "[http]", 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "my.toml", Path("."))
    message = str(info.value)
    assert "fix.sessions[5]" in message and "DESK->X->OMS" in message and "fix.sessions[4]" in message
