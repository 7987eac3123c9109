"""The Kopf settings Lockstep starts with: each one is there for a measured reason."""

from __future__ import annotations

import kopf

from lockstep import constants
from lockstep.controller import handlers


def configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    return settings


def test_no_diff_base_is_kept_per_object() -> None:
    storage = configured().persistence.diffbase_storage
    assert isinstance(storage, handlers._NoDiffBase)
    assert storage.fetch(body=kopf.Body({"metadata": {"name": "x"}})) is None


def test_events_are_lockstep_s_own_and_log_lines_are_not_events() -> None:
    settings = configured()
    assert settings.posting.reporting_component == constants.REPORTING_COMPONENT
    assert settings.posting.loggers is False
