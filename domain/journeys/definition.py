"""The journey graph marketers write, and the rules that make it runnable.

A definition is a list of nodes joined by ``next``; exactly one ``entry`` node says what enrolls a
customer. Validation names the node and the problem so the API can answer with a precise 422.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from domain.errors import InvalidInput

NODE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (604_800, 86_400, 3_600, 60, 1)


def parse_duration(text: str) -> int:
    """``"1d12h"`` -> seconds. Units: w, d, h, m, s, largest first."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like '30m', '1h', '2d12h' or '1w'")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=NODE_ID)


class EntryNode(_Node):
    type: Literal["entry"]
    event: str = Field(min_length=1, max_length=255, description="Track event name that enrolls.")
    where: dict[str, Any] = Field(
        default_factory=dict, description="Event properties that must equal these values."
    )
    next: str | None = None


class SendEmailNode(_Node):
    type: Literal["send_email"]
    template_id: str = Field(min_length=1, max_length=64)
    next: str | None = None


class WaitNode(_Node):
    type: Literal["wait"]
    duration: str
    next: str | None = None

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("duration must be positive")
        return value


class ExitNode(_Node):
    type: Literal["exit"]


Node = Annotated[EntryNode | SendEmailNode | WaitNode | ExitNode, Field(discriminator="type")]


class JourneyDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nodes: list[Node] = Field(min_length=2, max_length=500)

    def node(self, node_id: str):
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def entry(self) -> EntryNode:
        return next(n for n in self.nodes if isinstance(n, EntryNode))

    def template_ids(self) -> set[str]:
        return {n.template_id for n in self.nodes if isinstance(n, SendEmailNode)}


_adapter = TypeAdapter(JourneyDefinition)


def parse(raw: Any) -> JourneyDefinition:
    """Validate shape and graph; raise ``InvalidInput`` naming the node and the problem."""
    try:
        definition = _adapter.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInput([_describe(raw, err) for err in exc.errors()], code="invalid_definition") from exc
    problems = graph_problems(definition)
    if problems:
        raise InvalidInput(problems, code="invalid_definition")
    return definition


def _describe(raw: Any, err: dict) -> dict:
    loc = list(err["loc"])
    out = {"path": ".".join(str(p) for p in loc), "problem": err["msg"]}
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            out["node"] = raw["nodes"][loc[1]].get("id")
    return out


def graph_problems(definition: JourneyDefinition) -> list[dict]:
    problems: list[dict] = []
    ids = [n.id for n in definition.nodes]
    by_id = {n.id: n for n in definition.nodes}
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append({"node": dup, "problem": "node id is used more than once"})
    entries = [n.id for n in definition.nodes if isinstance(n, EntryNode)]
    if len(entries) != 1:
        problems.append(
            {"node": None, "problem": f"a journey needs exactly one entry node, found {len(entries)}"}
        )
    for node in definition.nodes:
        target = getattr(node, "next", None)
        if target is not None and target not in by_id:
            problems.append({"node": node.id, "problem": f"next names an unknown node {target!r}"})
        if target is not None and isinstance(by_id.get(target), EntryNode):
            problems.append({"node": node.id, "problem": "next cannot lead back to the entry node"})
    if problems:
        return problems
    reached = _reachable(by_id, entries[0])
    for node in definition.nodes:
        if node.id not in reached:
            problems.append({"node": node.id, "problem": "node cannot be reached from the entry"})
    loop = _loop_without_wait(by_id, entries[0])
    if loop:
        problems.append({"node": loop[0], "problem": f"path loops without a wait: {' -> '.join(loop)}"})
    return problems


def _successors(node) -> list[str]:
    target = getattr(node, "next", None)
    return [target] if target else []


def _reachable(by_id: dict, start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(_successors(by_id[current]))
    return seen


def _loop_without_wait(by_id: dict, start: str) -> list[str] | None:
    """A cycle whose nodes contain no wait would spin forever; return it if there is one."""
    on_path: list[str] = []
    done: set[str] = set()

    def visit(node_id: str) -> list[str] | None:
        if node_id in on_path:
            cycle = [*on_path[on_path.index(node_id) :], node_id]
            if not any(isinstance(by_id[n], WaitNode) for n in cycle):
                return cycle
            return None
        if node_id in done:
            return None
        on_path.append(node_id)
        for nxt in _successors(by_id[node_id]):
            found = visit(nxt)
            if found:
                return found
        on_path.pop()
        done.add(node_id)
        return None

    return visit(start)


def matches_entry(entry: dict, event_name: str, properties: dict) -> bool:
    """Does a stored event enroll into a journey whose entry node is ``entry`` (a snapshot dict)?"""
    if entry.get("event") != event_name:
        return False
    return all(properties.get(key) == value for key, value in (entry.get("where") or {}).items())
