"""Erasing a customer also deletes what Temporal keeps of them: their journeys' histories (a running one
stops at once instead of waiting out its timers) and their cases' SLA clocks. If Temporal cannot do it,
nothing is erased and the request can be repeated."""

from __future__ import annotations

from temporalio.client import WorkflowExecutionStatus

from runtime import forget
from runtime.case_dispatcher import CaseDispatcher
from tests.cases.helpers import make_customer, make_team, open_case
from tests.conftest import free_port, wait_for
from tests.temporal_env import gone
from tests.workflows.harness import engine
from tests.workflows.test_abandoned_cart import _setup
from workflows.case_sla import sla_workflow_id


async def test_erasure_deletes_the_customers_journeys_from_temporal_and_no_one_elses(
    dev_server, app, client, admin_headers, sessions, settings
):
    app.state.temporal = dev_server.client
    async with engine(dev_server, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="small")
        bob = await e.customer("bob", value_tier="small")
        await e.track("ada", "Cart Updated", cart_id="c0")
        await e.track("ada", "Order Completed", cart_id="c0")  # that journey has finished
        assert (await e.handle("cart", ada, "c0").result()).path == ["wait_order", "done"]
        await e.track("ada", "Cart Updated", cart_id="c1")
        await e.track("bob", "Cart Updated", cart_id="c2")
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        await wait_for(lambda: e.listening(bob, "Order Completed"))

        response = await client.delete(f"/api/customers/{ada}?reason=asked", headers=admin_headers)

        assert response.status_code == 200, response.text
        assert (
            response.json()["workflows_deleted"] == 2
        )  # the finished one too (tests/runtime/test_forget.py)
        await wait_for(lambda: gone(e.handle("cart", ada, "c1")))
        assert (await e.handle("cart", bob, "c2").describe()).status == WorkflowExecutionStatus.RUNNING
        assert response.json()["workflows_already_gone"] == 0
        audit = await client.get("/api/customers/erasures?user_id=ada", headers=admin_headers)
        assert [r["workflows_deleted"] for r in audit.json()] == [2]
        assert e.mailbox() == []


async def test_an_erasure_repeated_after_a_partial_deletion_still_accounts_for_every_history(
    dev_server, app, client, admin_headers, sessions, settings
):
    app.state.temporal = dev_server.client
    async with engine(dev_server, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="small")
        for cart in ("c1", "c2", "c3"):
            await e.track("ada", "Cart Updated", cart_id=cart)
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        # A first attempt deleted one history, then Temporal failed it: nothing was erased.
        assert (
            await forget.delete_histories(dev_server.client, [e.handle("cart", ada, "c1").id])
        ).deleted == 1

        response = await client.delete(f"/api/customers/{ada}?reason=asked", headers=admin_headers)

        assert response.status_code == 200, response.text
        assert (response.json()["workflows_deleted"], response.json()["workflows_already_gone"]) == (2, 1)
        for cart in ("c1", "c2", "c3"):
            await wait_for(lambda cart=cart: gone(e.handle("cart", ada, cart)))


async def test_when_temporal_is_unreachable_nothing_is_erased(
    dev_server, app, client, admin_headers, sessions, settings
):
    async with engine(dev_server, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="small")
        await e.track("ada", "Cart Updated", cart_id="c1")
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        app.state.settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})

        response = await client.delete(f"/api/customers/{ada}?reason=asked", headers=admin_headers)

        assert response.status_code == 503, response.text
        assert "nothing was erased" in response.json()["detail"]
        profile = await client.get(f"/api/customers/{ada}", headers=admin_headers)
        assert profile.status_code == 200
        assert [j["workflow_id"] for j in profile.json()["journeys"]] == [e.handle("cart", ada, "c1").id]
        assert (await e.handle("cart", ada, "c1").describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_case_clock_started_while_its_customer_is_erased_is_deleted_from_temporal(
    dev_server, app, client, admin_headers, sessions
):
    """The case dispatcher read a case's change before the erasure and starts its clock after the
    erasure deleted it (the id is free again): the pass deletes it once the erasure committed."""
    app.state.temporal = dev_server.client
    await make_team(sessions, "care")
    ada = await make_customer(sessions, "ada")
    bob = await make_customer(sessions, "bob")
    ada_case = await open_case(sessions, ada, "care")
    bob_case = await open_case(sessions, bob, "care")
    erasures = []

    class OvertakenDispatcher(CaseDispatcher):
        async def _signal(self, change) -> None:
            if change.case_id == ada_case:
                erasures.append(
                    await client.delete(f"/api/customers/{ada}?reason=asked", headers=admin_headers)
                )
            await super()._signal(change)

    # No worker: the clocks only need to exist in Temporal.
    dispatcher = OvertakenDispatcher(dev_server.client, sessions, task_queue="no-worker")
    assert await dispatcher.dispatch_once() == 2

    [erasure] = erasures
    assert erasure.status_code == 200, erasure.text
    assert (erasure.json()["workflows_deleted"], erasure.json()["workflows_already_gone"]) == (0, 1)
    clock = dev_server.client.get_workflow_handle(sla_workflow_id(ada_case))
    await wait_for(lambda: gone(clock))
    others = dev_server.client.get_workflow_handle(sla_workflow_id(bob_case))
    assert (await others.describe()).status == WorkflowExecutionStatus.RUNNING
