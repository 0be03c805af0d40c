"""A profile merged into another brings its points, and an award meant once per person stays once.

A journey whose re-entry policy admits a person once may have given its welcome bonus to each of two
profiles that turn out to be one person. The merged customer keeps their own copy; the merged-away
profile's copy arrives with the rest of its points and is then taken back by a visible entry naming
the merge. What the visitor had already redeemed of their copy comes out of what is left of the
customer's own copy (they enjoyed it once); their purchase points are never touched, and the balance
never goes below zero: what cannot be recovered is written off and noted on the entry. Steps of the
two enrollments that one of them has not reached yet are claimed as done, so the enrollment that goes
on does not give the person the bonus a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.loyalty import events_out, keys, repository
from domain.loyalty.models import LoyaltyAccount, LoyaltyEntry, LoyaltyLot
from domain.loyalty.postings import append
from domain.loyalty.service import program


def _awards_by_step(entries: list[LoyaltyEntry]) -> dict[keys.Step, LoyaltyEntry]:
    found: dict[keys.Step, LoyaltyEntry] = {}
    for entry in entries:
        step = keys.step_of(entry.idempotency_key)
        if step is not None:
            found.setdefault(step, entry)
    return found


@dataclass
class _Duplicate:
    theirs: LoyaltyEntry  # the merged-away profile's copy: reversed
    ours: LoyaltyEntry  # the customer's own: kept


def _match(
    pairs: list[tuple[str, str]], theirs: list[LoyaltyEntry], ours: list[LoyaltyEntry]
) -> tuple[list[_Duplicate], list[str]]:
    """Awards given by the same step of both enrollments of a pair, and the claims for steps only one
    of the two has given so far."""
    their_steps, our_steps = _awards_by_step(theirs), _awards_by_step(ours)
    duplicates: dict[int, _Duplicate] = {}
    claims: list[str] = []
    for their_wf, our_wf in pairs:
        mine = {s: e for (wf, s), e in our_steps.items() if wf == our_wf}
        yours = {s: e for (wf, s), e in their_steps.items() if wf == their_wf}
        for step, entry in yours.items():
            if step in mine:
                duplicates.setdefault(entry.id, _Duplicate(entry, mine[step]))
            else:
                claims.append(keys.claim(our_wf, step))
        claims += [keys.claim(their_wf, step) for step in mine.keys() - yours.keys()]
    return sorted(duplicates.values(), key=lambda d: d.theirs.id), claims


async def fold_member(
    session: AsyncSession,
    source_id: int,
    target_id: int,
    now: datetime,
    *,
    once_per_person: Sequence[tuple[str, str]] = (),  # journeys.once_per_person_pairs
) -> None:
    """A visitor merged into a known customer brings their points (called before the visitor's profile,
    and with it their account, is deleted).

    A customer without an account takes the visitor's ledger as it is. Otherwise each of the
    visitor's open lots is credited to the customer as an adjustment dated when the lot was earned,
    expiring when it would have (the lot's own expiry: the programme's may have changed since it was
    earned) and already warned about if the visitor was; the customer's tier points stay their own.
    Then the visitor's copies of awards the customer also has are reversed (see the module)."""
    accounts = await repository.lock_existing_accounts(session, [source_id, target_id])
    theirs = await repository.journey_awards(session, source_id) if source_id in accounts else []
    ours = await repository.journey_awards(session, target_id) if target_id in accounts else []
    duplicates, claims = _match(list(once_per_person), theirs, ours)
    await repository.claim_keys(session, claims, target_id, now)
    if source_id not in accounts:
        return
    if target_id not in accounts:  # no award of the customer's, so none to keep twice
        session.expunge(accounts[source_id])  # the row changes owner below, outside the ORM
        await repository.hand_over(session, source_id, target_id)
        return
    await repository.keep_folded_keys(session, source_id, target_id, now)
    lots = await repository.open_lots(session, source_id)
    expired = await repository.expired_of(session, source_id, [d.theirs.id for d in duplicates])
    left = {lot.entry_id: lot.remaining for lot in lots}
    if not lots and not duplicates:
        return
    config, who = await program(session), (await repository.identities(session, [target_id]))[target_id]
    acct = accounts[target_id]
    credited: dict[int, int] = {}  # the visitor's lot -> the customer's lot that carries it on
    for lot in lots:
        entry = await append(
            session,
            config,
            acct,
            kind="adjust",
            points=lot.remaining,
            key=f"merge/{source_id}/{lot.entry_id}",
            source="merge",
            now=now,
            occurred_at=lot.earned_at,
            expires_at=lot.expires_at,
            warned_at=lot.warned_at,  # the person was told these points expire: not a second time
            reason=f"points of profile {source_id}, merged into this one",
            who=who,
        )
        credited[lot.entry_id] = entry.id
    if duplicates:
        open_now = {lot.entry_id: lot for lot in await repository.open_lots(session, target_id)}
        for dup in duplicates:
            gone = expired.get(dup.theirs.id, 0)
            await _reverse(
                session,
                acct,
                dup,
                source_id=source_id,
                their_lot=open_now.get(credited.get(dup.theirs.id, -1)),
                our_lot=open_now.get(dup.ours.id),
                spent=dup.theirs.points - left.get(dup.theirs.id, 0) - gone,
                expired=gone,
                now=now,
                who=who,
            )
    await events_out.flush(session)


async def _reverse(
    session: AsyncSession,
    acct: LoyaltyAccount,
    dup: _Duplicate,
    *,
    source_id: int,
    their_lot: LoyaltyLot | None,
    our_lot: LoyaltyLot | None,
    spent: int,
    expired: int,
    now: datetime,
    who: repository.Identity,
) -> None:
    """Take back the visitor's copy: what is left of it, then what they spent of it from what is left
    of the customer's own copy. Each entry names the lot it takes from (the audit replays that)."""
    takes = []
    if their_lot is not None:
        takes.append((their_lot, their_lot.remaining, f"merge/{source_id}/reverse/{dup.theirs.id}"))
    if our_lot is not None and spent > 0:
        key = f"merge/{source_id}/reverse/{dup.theirs.id}/own"
        takes.append((our_lot, min(spent, our_lot.remaining), key))
    recovered = sum(points for _, points, _ in takes)
    meta = {
        "merged_from": source_id,
        "reverses": dup.theirs.idempotency_key,
        "kept_entry_id": dup.ours.id,
        "points": dup.theirs.points,
        "recovered": recovered,
        "expired": expired,  # gone before the merge: the person never had the use of them
        "written_off": dup.theirs.points - recovered - expired,  # spent, and nothing left to take
    }
    reason = (
        f"reversed: profile {source_id}, merged into this one, had this award too "
        f"({dup.theirs.reason}); it is given once per customer"
    )
    for lot, points, key in takes:
        if points > 0:
            await append(
                session,
                None,
                acct,
                kind="adjust",
                points=-points,
                key=key,
                source="merge",
                now=now,
                reason=reason,
                who=who,
                lot=lot,
                meta=meta,
            )
