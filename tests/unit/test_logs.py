"""Structured logs: one JSON object per line with the fields a log pipeline indexes."""

from __future__ import annotations

import json
import logging

from lockstep import logs


def test_json_lines_carry_the_object_and_job() -> None:
    record = logging.makeLogRecord(
        {
            "name": "lockstep.controller.reconcile",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "job %s failed",
            "args": ("shop-1",),
            "namespace": "shop",
            "migration": "shop",
            "job": "shop-1",
        }
    )
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["message"] == "job shop-1 failed"
    assert (line["namespace"], line["migration"], line["job"]) == ("shop", "shop", "shop-1")
    assert line["logger"] == "lockstep.controller.reconcile"
    assert "args" not in line and "msg" not in line
