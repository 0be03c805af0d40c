"""Every node type doing its job: branches, splits, points, traits, signed webhooks, escalation
outcomes, pausing and archiving, and the numbers marketers read afterwards."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

from activities.contracts import CASE_UPDATE_SIGNAL, CaseUpdate
from activities.webhooks import SIGNATURE_HEADER, verify
from domain.customers import repository as customers
from domain.db import transaction, utcnow
from domain.journeys.conditions import choose_path, split_bucket
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import AdjustIn
from tests.conftest import wait_for
from tests.workflows.harness import engine
from workflows.journey import JourneyWorkflow


def _graph(*nodes: dict, entry_event: str = "Signed Up", rules: dict | None = None) -> dict:
    first = nodes[0]["id"]
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": entry_event, "next": first},
            *nodes,
            {"id": "done", "type": "exit"},
        ],
        "rules": rules or {},
    }


async def _at(handle, node_id: str) -> bool:
    steps = await handle.query(JourneyWorkflow.path)
    return bool(steps) and steps[-1].node_id == node_id and steps[-1].left_at is None


async def test_branch_on_trait_event_property_and_segment(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.segment("vips", {"trait": "vip", "op": "equals", "value": True})
        for name in ("vip", "big", "tier", "rest"):
            await e.template(name, name)
        await e.journey(
            "route",
            _graph(
                {
                    "id": "b",
                    "type": "branch",
                    "branches": [
                        {"when": [{"segment": "vips"}], "next": "vip"},
                        {"when": [{"event_property": "total", "op": "gte", "value": 100}], "next": "big"},
                        {
                            "when": [{"trait": "value_tier", "op": "in", "value": ["key", "major"]}],
                            "next": "tier",
                        },
                    ],
                    "default_next": "rest",
                },
                {"id": "vip", "type": "send_email", "template_id": "vip", "next": "done"},
                {"id": "big", "type": "send_email", "template_id": "big", "next": "done"},
                {"id": "tier", "type": "send_email", "template_id": "tier", "next": "done"},
                {"id": "rest", "type": "send_email", "template_id": "rest", "next": "done"},
                entry_event="Order Completed",
            ),
        )
        expected = {}
        for user, traits, total, member, subject in (
            ("ann", {}, 10, True, "vip"),
            ("ben", {"value_tier": "key"}, 150, False, "big"),
            ("cat", {"value_tier": "major"}, 20, False, "tier"),
            ("dan", {"value_tier": "small"}, 20, False, "rest"),
        ):
            await e.customer(user, **traits, vip=member)
            await e.track(user, "Order Completed", total=total)
            expected[f"{user}@example.com"] = subject
        for enrollment in await e.enrollments("route"):
            await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, enrollment.workflow_id))
        assert {m["to"]: m["subject"] for m in e.mailbox()} == expected


async def test_split_is_weighted_stable_per_customer_and_holds_out(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("a", "A")
        await e.template("b", "B")
        split = {
            "id": "s",
            "type": "split",
            "paths": [{"weight": 1, "next": "a"}, {"weight": 1, "next": "b"}],
            "holdout_percent": 20,
        }
        await e.journey(
            "ab",
            _graph(
                split,
                {"id": "a", "type": "send_email", "template_id": "a", "next": "done"},
                {"id": "b", "type": "send_email", "template_id": "b", "next": "done"},
            ),
        )
        ids = [await e.customer(f"c{i}") for i in range(40)]
        for i in range(40):
            await e.track(f"c{i}", "Signed Up")
        results = {}
        for customer_id in ids:
            results[customer_id] = (await e.result(e.handle("ab", customer_id))).path
        groups = {"a": 0, "b": 0, "holdout": 0}
        for path in results.values():
            groups[path[1] if len(path) > 1 else "holdout"] += 1
        assert sum(groups.values()) == 40
        assert all(count >= 3 for count in groups.values()), groups  # every group is used
        assert len(e.mailbox()) == groups["a"] + groups["b"]
        # The group is a pure function of journey, node and customer: the same on every run.
        for customer_id, path in results.items():
            chosen = choose_path(split["paths"], 20, split_bucket("ab", "s", customer_id))
            assert (path[1] if len(path) > 1 else None) == (None if chosen is None else "ab"[chosen])


async def _http_receiver(answers: list[int], received: list[tuple[dict, bytes]]):
    """A minimal HTTP endpoint: answers each POST with the next status in ``answers``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        status = answers.pop(0) if answers else 204
        if status < 300:
            received.append((headers, body))
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_points_traits_and_a_signed_webhook(env, sessions, settings):
    received: list[tuple[dict, bytes]] = []
    server = await _http_receiver([503], received)  # the receiver hiccups once: the call is retried
    port = server.sockets[0].getsockname()[1]
    try:
        async with engine(env, sessions, settings) as e:
            await e.journey(
                "loyal",
                _graph(
                    {"id": "award", "type": "award_points", "points": 50, "reason": "welcome", "next": "tag"},
                    {"id": "tag", "type": "update_trait", "traits": {"welcomed": True}, "next": "hook"},
                    {
                        "id": "hook",
                        "type": "webhook",
                        "url": f"http://127.0.0.1:{port}/hook",
                        "body": {"kind": "welcome"},
                        "next": "done",
                    },
                ),
            )
            ada = await e.customer("ada")
            await e.track("ada", "Signed Up")
            result = await e.result(e.handle("loyal", ada))

            assert result.path == ["award", "tag", "hook", "done"]
            assert await e.points(ada) == 50
            async with transaction(sessions) as session:
                assert (await customers.get(session, ada)).traits["welcomed"] is True
            [(headers, body)] = received
            payload = json.loads(body)
            assert (
                payload["kind"] == "welcome"
                and payload["customer_id"] == ada
                and payload["node_id"] == "hook"
            )
            secret = settings.webhook_signing_secret.get_secret_value()
            signature = headers[SIGNATURE_HEADER.lower()]
            assert verify(secret, signature, body)
            assert not verify("another-secret", signature, body)
            assert not verify(secret, signature, body + b" ")
            assert headers["idempotency-key"].endswith("/hook/1")
    finally:
        server.close()


async def test_a_deduction_the_balance_does_not_cover_goes_to_insufficient_next(env, sessions, settings):
    """A deduction that took nothing went on to `next`: the voucher the points pay for was sent
    to a customer who had none."""
    async with engine(env, sessions, settings) as e:
        await e.template("voucher", "Your voucher")
        await e.template("more", "Earn a few more points")
        await e.journey(
            "perk",
            _graph(
                {
                    "id": "pay",
                    "type": "deduct_points",
                    "points": 500,
                    "reason": "voucher",
                    "next": "voucher",
                    "insufficient_next": "more",
                },
                {"id": "voucher", "type": "send_email", "template_id": "voucher", "next": "done"},
                {"id": "more", "type": "send_email", "template_id": "more", "next": "done"},
                entry_event="Asked For Voucher",
            ),
        )
        await e.journey(  # no insufficient_next: a deduction not covered leaves the journey
            "perk-bare",
            _graph(
                {"id": "pay", "type": "deduct_points", "points": 500, "next": "voucher"},
                {"id": "voucher", "type": "send_email", "template_id": "voucher", "next": "done"},
                entry_event="Asked Again",
            ),
        )
        ada, bob = await e.customer("ada"), await e.customer("bob")
        async with transaction(sessions) as session:
            await loyalty.adjust(session, bob, "seed", AdjustIn(points=600, reason="seed"), utcnow())
        await e.track("ada", "Asked For Voucher")
        await e.track("bob", "Asked For Voucher")
        await e.track("ada", "Asked Again")

        assert (await e.result(e.handle("perk", ada))).path == ["pay", "more", "done"]
        assert (await e.result(e.handle("perk", bob))).path == ["pay", "voucher", "done"]
        assert (await e.result(e.handle("perk-bare", ada))).path == ["pay"]
        sent = sorted((m["to"], m["subject"]) for m in e.mailbox())
        assert sent == [("ada@example.com", "Earn a few more points"), ("bob@example.com", "Your voucher")]
        assert (await e.points(ada), await e.points(bob)) == (0, 100)
        [pay] = [s for s in await e.handle("perk", ada).query(JourneyWorkflow.path) if s.node_id == "pay"]
        assert pay.outcome == "insufficient"


async def test_escalation_branches_on_resolution_or_sla_breach(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.team("care")
        await e.template("sorry", "Sorry {{ traits.name }}")
        await e.template("fixed", "Fixed for {{ traits.name }}")
        await e.journey(
            "care",
            _graph(
                {
                    "id": "esc",
                    "type": "escalate",
                    "subject": "Complaint",
                    "team": "care",
                    "sla": "8h",
                    "resolved_next": "fixed",
                    "breached_next": "sorry",
                },
                {"id": "fixed", "type": "send_email", "template_id": "fixed", "next": "done"},
                {"id": "sorry", "type": "send_email", "template_id": "sorry", "next": "done"},
                entry_event="Complained",
            ),
        )
        ada = await e.customer("ada")
        bob = await e.customer("bob")
        await e.track("ada", "Complained")
        await e.track("bob", "Complained")
        ada_handle = e.handle("care", ada)
        await wait_for(lambda: _at(ada_handle, "esc"))

        async def adas_cases():  # the step is entered before its activity has opened the case
            return [c for c in await e.cases() if c.customer_id == ada]

        [case] = await wait_for(adas_cases)
        assert case.waiting_workflow_id == ada_handle.id
        # What the cases area's dispatcher sends when an agent resolves the case.
        await e.client.get_workflow_handle(case.waiting_workflow_id).signal(
            CASE_UPDATE_SIGNAL,
            CaseUpdate(case_id=case.id, status="resolved", outcome="refunded", breached=False),
        )

        assert (await ada_handle.result()).path == ["esc", "fixed", "done"]
        assert (await e.result(e.handle("care", bob))).path == ["esc", "sorry", "done"]
        assert sorted(m["subject"] for m in e.mailbox()) == ["Fixed for Ada", "Sorry Bob"]


async def test_pause_holds_before_the_send_and_resume_releases(
    env, sessions, settings, client, marketer_headers
):
    async with engine(env, sessions, settings) as e:
        await e.template("tips", "Tips")
        await e.journey(
            "drip",
            _graph(
                {"id": "w", "type": "wait", "duration": "1h", "next": "tips"},
                {"id": "tips", "type": "send_email", "template_id": "tips", "next": "done"},
            ),
        )
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("drip", ada)
        await wait_for(lambda: _at(handle, "w"))
        app = client._transport.app
        app.state.temporal_client = e.client  # the API signals through the same server
        assert (await client.post("/api/journeys/drip/pause", headers=marketer_headers)).status_code == 200

        await e.env.sleep(timedelta(hours=6))  # well past the wait, and several hourly re-checks
        assert await _at(handle, "tips")
        assert e.mailbox() == []

        assert (await client.post("/api/journeys/drip/resume", headers=marketer_headers)).status_code == 200
        result = await e.result(handle)
        assert result.path == ["w", "tips", "done"]
        assert [m["subject"] for m in e.mailbox()] == ["Tips"]
        # Released by the resume signal about 5 h after reaching the send, not by the re-check at 6 h.
        tips = next(s for s in await handle.query(JourneyWorkflow.path) if s.node_id == "tips")
        held = datetime.fromisoformat(tips.left_at) - datetime.fromisoformat(tips.entered_at)
        assert timedelta(hours=4) < held < timedelta(hours=5, minutes=30), held


async def test_archive_lets_customers_leave_without_further_sends(
    env, sessions, settings, client, marketer_headers
):
    async with engine(env, sessions, settings) as e:
        await e.template("tips", "Tips")
        await e.journey(
            "drip",
            _graph(
                {"id": "w", "type": "wait", "duration": "1d", "next": "tips"},
                {"id": "tips", "type": "send_email", "template_id": "tips", "next": "done"},
            ),
        )
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("drip", ada)
        await wait_for(lambda: _at(handle, "w"))
        assert (await client.post("/api/journeys/drip/archive", headers=marketer_headers)).status_code == 200
        await e.track("ada", "Signed Up")  # nobody enters an archived journey

        result = await e.result(handle)

        assert result.status == "exited"
        assert e.mailbox() == []
        [enrollment] = await e.enrollments("drip")
        assert enrollment.status == "exited"


async def test_stats_and_customer_path_show_who_is_where(env, sessions, settings, client, marketer_headers):
    async with engine(env, sessions, settings) as e:
        await e.template("welcome", "Welcome")
        await e.journey(
            "onboard",
            _graph(
                {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "w"},
                {"id": "w", "type": "wait", "duration": "3d", "next": "done"},
                rules={"goal": {"event": "Order Completed"}},
            ),
        )
        ada = await e.customer("ada")
        bob = await e.customer("bob")
        await e.track("ada", "Signed Up")
        await e.track("bob", "Signed Up")
        for customer_id in (ada, bob):
            await wait_for(lambda c=customer_id: _at(e.handle("onboard", c), "w"))
        await e.track("ada", "Order Completed")
        await e.handle("onboard", ada).result()

        stats = (await client.get("/api/journeys/onboard/stats", headers=marketer_headers)).json()
        nodes = {n["node_id"]: n for n in stats["nodes"]}
        assert stats["enrollments"] == {"active": 1, "converted": 1}
        assert nodes["hello"] == {
            "node_id": "hello",
            "entered": 2,
            "completed": 2,
            "waiting_now": 0,
            "converted": 1,
        }
        assert nodes["w"] == {"node_id": "w", "entered": 2, "completed": 1, "waiting_now": 1, "converted": 1}

        path = (await client.get(f"/api/journeys/onboard/enrollments/{ada}", headers=marketer_headers)).json()
        assert [(s["node_id"], s["outcome"]) for s in path[0]["path"]] == [
            ("hello", "sent"),
            ("w", "converted"),
        ]
        assert path[0]["status"] == "converted"
        missing = await client.get("/api/journeys/onboard/enrollments/999999", headers=marketer_headers)
        assert missing.status_code == 404


async def test_manual_enrollment_by_api_enrolls_each_customer_once(
    env, sessions, settings, client, marketer_headers
):
    async with engine(env, sessions, settings) as e:
        await e.template("invite", "You are invited, {{ traits.name }} ({{ properties.event }})")
        await e.journey(
            "invite",
            {
                "nodes": [
                    {"id": "start", "type": "entry", "trigger": "manual", "next": "mail"},
                    {"id": "mail", "type": "send_email", "template_id": "invite", "next": "done"},
                    {"id": "done", "type": "exit"},
                ]
            },
        )
        ids = [await e.customer(f"guest{i}") for i in range(5)]
        client._transport.app.state.temporal_client = e.client
        client._transport.app.state.settings = client._transport.app.state.settings.model_copy(
            update={"temporal_task_queue": e.task_queue}
        )
        body = {
            "customer_ids": ids[:3],
            "user_ids": ["guest3", "guest4", "nobody"],
            "properties": {"event": "Gala"},
        }

        first = await client.post("/api/journeys/invite/enrollments", json=body, headers=marketer_headers)
        again = await client.post("/api/journeys/invite/enrollments", json=body, headers=marketer_headers)

        assert (first.status_code, first.json()) == (202, {"accepted": 5, "unknown": 1}), first.text
        assert again.json() == {"accepted": 5, "unknown": 1}
        for customer_id in ids:
            await e.result(e.handle("invite", customer_id))
        assert len(await e.enrollments("invite")) == 5  # the second call enrolled nobody again
        assert sorted(m["subject"] for m in e.mailbox()) == [
            f"You are invited, Guest{i} (Gala)" for i in range(5)
        ]
        wrong = await client.post("/api/journeys/nope/enrollments", json=body, headers=marketer_headers)
        assert wrong.status_code == 404
        empty = await client.post("/api/journeys/invite/enrollments", json={}, headers=marketer_headers)
        assert empty.status_code == 422 and "customer_ids" in empty.text


async def test_a_boolean_in_a_condition_or_filter_is_no_number(env, sessions, settings):
    """`true` is no `1` (Python's True == 1 sent 1s down the branch for true and let them through an
    entry filter): the journey reads JSON as segments and analytics do."""
    async with engine(env, sessions, settings) as e:
        for name in ("flagged", "rest"):
            await e.template(name, name)
        branch = {
            "id": "b",
            "type": "branch",
            "branches": [
                {"when": [{"trait": "vip", "op": "eq", "value": True}], "next": "flagged"},
                {"when": [{"event_property": "gift", "op": "in", "value": [True]}], "next": "flagged"},
            ],
            "default_next": "rest",
        }
        graph = _graph(
            branch,
            {"id": "flagged", "type": "send_email", "template_id": "flagged", "next": "done"},
            {"id": "rest", "type": "send_email", "template_id": "rest", "next": "done"},
            entry_event="Order Completed",
        )
        graph["nodes"][0]["where"] = {"paid": True}
        await e.journey("flags", graph)
        for user, vip, gift, paid in (
            ("ann", True, False, True),
            ("ben", 1, 1, True),  # numbers where the journey asks for true: the default path
            ("cat", False, True, True),
            ("dan", True, True, 1),  # paid: 1 is not paid: true, and enrolls nobody
        ):
            await e.customer(user, vip=vip)
            await e.track(user, "Order Completed", gift=gift, paid=paid)
        enrollments = await e.enrollments("flags")
        for enrollment in enrollments:
            await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, enrollment.workflow_id))
        assert len(enrollments) == 3
        assert {m["to"]: m["subject"] for m in e.mailbox()} == {
            "ann@example.com": "flagged",
            "ben@example.com": "rest",
            "cat@example.com": "flagged",
        }
