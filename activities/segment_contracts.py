"""Segment maintenance activity names and dataclasses (pure, importable from workflows)."""

from __future__ import annotations

from dataclasses import dataclass

REFRESH_WINDOW_EDGES = "refresh_segment_window_edges"
RECOMPUTE_CUSTOMER_SCORES = "recompute_customer_scores"


@dataclass
class MaintenanceInput:
    task: str  # window_edges | customer_scores


@dataclass
class MaintenanceResult:
    task: str
    customers: int = 0
    entered: int = 0
    exited: int = 0
