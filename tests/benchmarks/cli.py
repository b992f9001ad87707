"""What every benchmark CLI test needs: bad options stop it before any work, with a reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def usage_error(main: Callable[[list[str]], int], argv: list[str],
                capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main(argv)``, which must exit with argparse's usage status (2) before doing
    anything; the last line it wrote to stderr (argparse's ``prog: error: ...``)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]
