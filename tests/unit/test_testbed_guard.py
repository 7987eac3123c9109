"""The test bed refuses a checkout under /tmp at once: its pods mount an emptyDir over /tmp."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.podagent import background


def test_a_checkout_under_tmp_is_refused_with_the_reason() -> None:
    with pytest.raises(RuntimeError, match="under /tmp: pods of the test bed mount an emptyDir"):
        background.refuse_repository_under_tmp(Path("/tmp/lockstep"))


def test_a_checkout_elsewhere_is_fine() -> None:
    background.refuse_repository_under_tmp(Path("/work/lockstep"))
