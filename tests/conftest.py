"""Shared test setup: pytester runs real pytest sessions against real SQLite stores."""

from __future__ import annotations

pytest_plugins = ["pytester"]
