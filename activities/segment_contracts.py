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


# For journey branches and entry filters: decide live, for one customer, with the in-Python evaluator.
CUSTOMER_IN_SEGMENT = "customer_in_segment"


@dataclass
class SegmentCheck:
    segment_id: str
    customer_id: int
