"""Subscription groups, customers' choices, the suppression list, and who may be mailed right now.

``blocked`` is asked at send time, for every message, so a choice made a second ago applies to the next
step of a journey already running and to the rest of a broadcast already under way.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import service as customer_service
from domain.errors import Conflict, InvalidInput, NotFound
from domain.subscriptions import repository, tokens, unsubscribe_mail
from domain.subscriptions.models import SubscriptionGroup
from domain.subscriptions.schemas import (
    FeedbackBatch,
    FeedbackResult,
    GroupIn,
    GroupOut,
    GroupUpdate,
    MailUnsubscribeResult,
    PreferenceGroup,
    Preferences,
    SuppressionIn,
    SuppressionOut,
)

MARKETING, TRANSACTIONAL = "marketing", "transactional"
# An operational broadcast's notice: sent past marketing unsubscribes, never to a bounce or complaint.
OPERATIONAL = "operational"
# The suppressions each kind of mail honours (marketing: every one).
_SUPPRESSED_FOR = {TRANSACTIONAL: {"bounced"}, OPERATIONAL: {"bounced", "complained"}}
ALL_GROUPS = "*"
# The customer id the unsubscribe and preference links of previews and test sends carry: no one's.
NO_CUSTOMER = 0


async def create_group(session: AsyncSession, spec: GroupIn) -> GroupOut:
    if await repository.get_group(session, spec.id) is not None:
        raise Conflict({"field": "id", "problem": f"a subscription group {spec.id!r} exists"})
    group = SubscriptionGroup(**spec.model_dump())
    await repository.add(session, group)
    return GroupOut.model_validate(group, from_attributes=True)


async def update_group(
    session: AsyncSession, group_id: str, spec: GroupUpdate, *, now: datetime | None = None
) -> GroupOut:
    """Change a group's name, description or ``opt_in`` default.

    ``opt_in`` decides for every customer without an explicit choice, and flipping it stores no event
    for the incremental segment refresher to follow; so, in this same transaction, every segment whose
    rule reads the group is rebuilt (recording its Segment Entered / Exited events)."""
    group = await repository.lock_group(session, group_id)
    if group is None:
        raise NotFound(f"subscription group {group_id!r} does not exist")
    was_opt_in = group.opt_in
    await repository.update_group(session, group, spec.model_dump(exclude_unset=True))
    if group.opt_in != was_opt_in:
        # Imported here, not at the top (as cases.service does): the segments area builds on this one
        # (its rules and SQL read our models and events), so this is a dependency back up. At module
        # level it would make the two areas import each other, one import in segments away from a
        # cycle, and load the segment compiler wherever the send-time check is used. Which rules read
        # the group and how they are rebuilt stays the segments service's business.
        from domain.segments import service as segments

        await segments.rebuild_reading_group(session, group_id, now=now)
    return GroupOut.model_validate(group, from_attributes=True)


async def list_groups(session: AsyncSession) -> list[GroupOut]:
    return [GroupOut.model_validate(g, from_attributes=True) for g in await repository.list_groups(session)]


async def get_group(session: AsyncSession, group_id: str) -> SubscriptionGroup | None:
    return await repository.get_group(session, group_id)


async def group_name(session: AsyncSession, group_id: str | None) -> str | None:
    """The name an email's footer shows for its group (None: no group, or one since deleted)."""
    group = await repository.get_group(session, group_id) if group_id else None
    return group.name if group else None


async def require_group(session: AsyncSession, group_id: str, field: str) -> SubscriptionGroup:
    group = await repository.get_group(session, group_id)
    if group is None:
        raise InvalidInput({"field": field, "problem": f"no subscription group {group_id!r}"})
    return group


async def blocked(
    session: AsyncSession, recipients: dict[int, str], category: str, group_id: str | None
) -> dict[int, str]:
    """Why each recipient (customer id -> address) must not get this message; absent = may send."""
    out: dict[int, str] = {}
    suppressed = await repository.suppressed(session, sorted(set(recipients.values())))
    for customer_id, address in recipients.items():
        reason = suppressed.get(address)
        if reason and (category == MARKETING or reason in _SUPPRESSED_FOR[category]):
            out[customer_id] = f"address suppressed ({reason})"
    if category != MARKETING:
        return out
    for customer_id in await repository.unsubscribed_from_all(
        session, [c for c in recipients if c not in out]
    ):
        out[customer_id] = "unsubscribed from all marketing"
    if group_id is None:
        return out
    group = await repository.get_group(session, group_id)
    choices = await repository.choices(session, [c for c in recipients if c not in out])
    for customer_id in recipients:
        if customer_id in out:
            continue
        choice = choices.get((customer_id, group_id))
        if choice is False:
            out[customer_id] = f"unsubscribed from {group_id}"
        elif choice is None and group is not None and group.opt_in:
            out[customer_id] = f"not opted in to {group_id}"
    return out


class CustomerGone(NotFound):
    """The customer a link names was erased: nothing is kept about them, and nothing more is sent."""


async def _current(session: AsyncSession, customer_id: int):
    """The customer a link names: itself, or the profile it was merged into since the email was sent
    (a visitor who later logged in), so their choice is honoured and stored against a live profile."""
    customer = await customer_service.get_current(session, customer_id)
    if customer is None:
        raise CustomerGone("this customer no longer exists")
    return customer


async def unsubscribe(session: AsyncSession, customer_id: int, group_id: str, source: str) -> bool:
    """Opt the customer out of one group, or of all marketing (``ALL_GROUPS``); whether anything changed
    (a repeated request changes nothing and records no event)."""
    return await _unsubscribe(session, await _current(session, customer_id), group_id, source)


async def _unsubscribe(session: AsyncSession, customer, group_id: str, source: str) -> bool:
    if group_id == ALL_GROUPS or await repository.get_group(session, group_id) is None:
        # a group deleted since the email was sent: honour the wish by stopping all marketing
        changed = await _choose_all(session, customer, False, source)
        if customer.email:
            changed |= await _suppress(session, customer.email, "unsubscribed", f"{source} by customer")
        return changed
    return await _choose(session, customer.id, group_id, False, source)


async def unsubscribe_by_email(
    session: AsyncSession, secret: str, mail: bytes | unsubscribe_mail.MailText, *, max_bytes: int
) -> MailUnsubscribeResult:
    """Act on a message sent to the unsubscribe mailbox (raw, or the subject and text a provider parsed
    out of it) as the one-click link does (same unsubscribe, same event, source ``mailto``). A message
    that is none, or too large, raises; a message that asks nothing we can act on (no token, a forged
    one, a test send's, an erased customer's) is ignored with its reason: the mailbox is public, and a
    provider would deliver such mail again and again. A mail acted on once is only acknowledged when
    it comes again (``repeat``): a provider's retry must not undo a re-subscription made since."""
    if isinstance(mail, bytes):
        unsubscribe_mail.check_size(len(mail), max_bytes)
    # Parsing takes up to a second of CPU for a hostile message: off the event loop.
    request = await asyncio.to_thread(unsubscribe_mail.read_request, mail)
    if not request.tokens:
        return MailUnsubscribeResult.ignored(
            "no_token", "neither the subject nor the text holds 'unsubscribe <token>'"
        )
    for token in request.tokens:
        try:
            customer_id, group_id = read_unsubscribe_token(secret, token)
            break
        except tokens.BadToken:
            continue
    else:
        return MailUnsubscribeResult.ignored("bad_token", "the token's signature does not match")
    if customer_id == NO_CUSTOMER:
        return MailUnsubscribeResult.ignored("test_send", "the token is a test send's, which acts for no one")
    try:
        customer = await _current(session, customer_id)
    except CustomerGone:
        return MailUnsubscribeResult.ignored("customer_erased", "the customer was erased; nothing is sent")
    # The profile acted on: the token's customer may have been merged into another since the send.
    answer = MailUnsubscribeResult(status="unsubscribed", customer_id=customer.id, group_id=group_id)
    if not await repository.claim_mail(session, unsubscribe_mail.mail_key(request.mail_id, token)):
        return answer.model_copy(update={"repeat": True})
    changed = await _unsubscribe(session, customer, group_id, "mailto")
    return answer.model_copy(update={"changed": changed})


async def _choose(
    session: AsyncSession, customer_id: int, group_id: str, subscribed: bool, source: str
) -> bool:
    if not await repository.set_choice(session, customer_id, group_id, subscribed, source):
        return False
    properties = {"group_id": group_id, "subscribed": subscribed, "source": source}
    await repository.record_changed(session, properties, customer_id=customer_id)
    return True


async def _choose_all(session: AsyncSession, customer, subscribed: bool, source: str) -> bool:
    """The person's choice for all marketing, kept on their profile: the address they have now is
    suppressed too, but a later one must not undo the choice (nor does a profile without one lose it)."""
    if not await repository.set_unsubscribed_from_all(session, customer, not subscribed):
        return False
    properties = {"group_id": ALL_GROUPS, "subscribed": subscribed, "source": source}
    await repository.record_changed(session, properties, customer_id=customer.id)
    return True


async def _suppress(session: AsyncSession, address: str, reason: str, detail: str | None) -> bool:
    if not await repository.suppress(session, address, reason, detail):
        return False
    await repository.record_changed(session, {"suppressed": True, "reason": reason}, address=address)
    return True


async def _unsuppress(session: AsyncSession, address: str) -> bool:
    if not await repository.unsuppress(session, address):
        return False
    await repository.record_changed(session, {"suppressed": False}, address=address)
    return True


async def preferences(session: AsyncSession, customer_id: int) -> Preferences:
    customer = await _current(session, customer_id)
    customer_id = customer.id
    groups = await repository.list_groups(session)
    choices = await repository.choices(session, [customer_id])
    suppressed = await repository.suppressed(session, [customer.email] if customer.email else [])
    return Preferences(
        customer_id=customer_id,
        email=customer.email,
        unsubscribed_from_all=bool(suppressed) or customer.unsubscribed_all_at is not None,
        groups=[
            PreferenceGroup(
                id=g.id,
                name=g.name,
                description=g.description,
                subscribed=choices.get((customer_id, g.id), not g.opt_in),
            )
            for g in groups
        ],
    )


async def save_preferences(
    session: AsyncSession,
    customer_id: int,
    subscribed: set[str],
    unsubscribe_all: bool,
    *,
    shown: dict[str, bool] | None = None,
    shown_all: bool | None = None,
) -> Preferences:
    """Record the boxes the person changed on their preference page.

    ``shown`` (group id -> ticked) and ``shown_all`` are what the page showed when it was opened; a box
    is a choice only where the form differs from them, so a choice made meanwhile elsewhere (a one-click
    unsubscribe from an email, another tab) is not undone by a box left untouched. A group the page did
    not show (created since) gets no choice. ``None`` compares with the state as it is now."""
    current = await preferences(session, customer_id)
    customer_id = current.customer_id  # the profile a merged-away id became
    if shown is None:
        shown = {group.id: group.subscribed for group in current.groups}
    if shown_all is None:
        shown_all = current.unsubscribed_from_all
    for group in current.groups:
        # Only what the person changed: the page shows every group, and a box left as it was is no
        # choice (storing one would log consent never given and pin the group's default for them).
        if group.id in shown and (group.id in subscribed) != shown[group.id]:
            await _choose(session, customer_id, group.id, group.id in subscribed, "preferences")
    if unsubscribe_all != shown_all:
        await _choose_all(session, await _current(session, customer_id), not unsubscribe_all, "preferences")
        if current.email:
            if unsubscribe_all:
                await _suppress(session, current.email, "unsubscribed", "preference page")
            else:
                # re-subscribing lifts only their own opt-out
                reasons = await repository.suppressed(session, [current.email])
                if reasons.get(current.email) == "unsubscribed":
                    await _unsuppress(session, current.email)
    return await preferences(session, customer_id)


async def record_feedback(session: AsyncSession, batch: FeedbackBatch) -> FeedbackResult:
    """Bounces and complaints from the mail provider. Transient bounces do not suppress.

    One about an erased person's address (a message on its way when they were erased, reported
    later) that no profile has now suppresses it only as a digest, without the provider's detail
    (which quotes it), as the erasure left the address's other entries."""
    kept = [e for e in batch.events if not (e.type == "bounce" and e.bounce_type == "transient")]
    addresses = [e.email.lower() for e in kept]
    # All the batch's locks first, in one order for every batch and erasure (not the batch's order);
    # an erasure in flight has then committed (its digests and records are seen) or waits for this.
    await repository.lock_addresses(session, addresses)
    erased = await repository.erased_only(session, addresses)
    for event in kept:
        reason = "bounced" if event.type == "bounce" else "complained"
        await _suppress(session, event.email.lower(), reason, event.detail)
    if erased:
        await repository.forget(session, sorted(erased))
    return FeedbackResult(suppressed=len(kept), ignored=len(batch.events) - len(kept))


async def add_suppression(session: AsyncSession, spec: SuppressionIn) -> None:
    await _suppress(session, spec.address.lower(), spec.reason, spec.detail)


async def suppress_address(session: AsyncSession, address: str, reason: str, detail: str | None) -> None:
    await _suppress(session, address, reason, detail)


async def hold_addresses(session: AsyncSession, addresses: list[str]) -> None:
    """Lock these addresses' suppressions until the transaction ends (PostgreSQL), in the one order
    every batch and erasure takes them: first thing in a transaction that suppresses several, or that
    also writes rows an erasure writes after locking the addresses (the send ledger)."""
    await repository.lock_addresses(session, addresses)


async def forget_addresses(session: AsyncSession, addresses: list[str]) -> None:
    """An erased person's addresses: their suppressions stay (a bounced address is never mailed again,
    an unsubscribed one gets no marketing until it opts in again) but keep only digests of them."""
    await repository.forget(session, addresses)


async def list_suppressions(session: AsyncSession, limit: int, after_id: int | None) -> list[SuppressionOut]:
    rows = await repository.list_suppressions(session, limit, after_id)
    return [SuppressionOut.model_validate(r, from_attributes=True) for r in rows]


async def remove_suppression(session: AsyncSession, address: str) -> None:
    if not await _unsuppress(session, address.lower()):
        raise NotFound(f"{address!r} is not suppressed")


# -- signed links -------------------------------------------------------------------------------------


def unsubscribe_token(secret: str, customer_id: int, group_id: str | None) -> str:
    return tokens.sign(secret, "unsubscribe", f"{customer_id}:{group_id or ALL_GROUPS}")


def read_unsubscribe_token(secret: str, token: str) -> tuple[int, str]:
    customer, group = tokens.fields(tokens.verify(secret, "unsubscribe", token), ":", 2)
    return tokens.customer_id(customer), group


def preferences_token(secret: str, customer_id: int) -> str:
    return tokens.sign(secret, "preferences", str(customer_id))


def read_preferences_token(secret: str, token: str) -> int:
    return tokens.customer_id(tokens.verify(secret, "preferences", token))
