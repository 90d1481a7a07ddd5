"""`since`/`until` values as dockerd reads them (events, prune and list filters)."""

from __future__ import annotations

from datetime import datetime

import pytest
from dockyard.apid.routes.system import _when

from dockyard.errdefs import InvalidArgument

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "expected"), [
    ("24h", NOW - 86400), ("1h30m", NOW - 5400), ("1.5h", NOW - 5400), ("10m", NOW - 600),
    ("500ms", NOW - 0.5), ("-5s", NOW + 5), ("0", 0.0), ("1596060000.5", 1596060000.5),
    ("2026-11-29T10:00:00Z", 1795946400.0), ("2026-11-29T10:00:00+01:00", 1795942800.0),
    ("2026-11-29T10:00:00.123456789Z", 1795946400.123456),
    ("2026-11-29", datetime(2026, 11, 29).timestamp()),  # no zone: local time, as dockerd
])
def test_go_durations_unix_seconds_and_dates(value, expected):
    assert _when(value, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["yesterday", "1d", "h", "10 m", "--5s"])
def test_what_dockerd_refuses_is_a_400(value):
    with pytest.raises(InvalidArgument, match="invalid timestamp"):
        _when(value, NOW)


def test_empty_is_no_bound():
    assert _when(None) is None and _when("") is None
