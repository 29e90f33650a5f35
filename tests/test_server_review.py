"""Review findings on `oms serve`: its command line, bad input and the lifecycle."""
from __future__ import annotations

import pytest

from oms_trading import cli


@pytest.mark.parametrize("flag", ["--fix-port", "--http-port"])
@pytest.mark.parametrize("value", ["70000", "65536", "-1"])
def test_a_port_out_of_range_on_the_command_line_is_refused(flag, value, capsys, monkeypatch):
    served = []
    monkeypatch.setattr("oms_trading.server.serve", lambda config, options: served.append(options) or 0)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", flag, value])
    assert exit_.value.code == 2 and not served      # not a listener on 70000 % 65536 = 4464
    err = capsys.readouterr().err
    assert "0..65535" in err and value in err and "Traceback" not in err
