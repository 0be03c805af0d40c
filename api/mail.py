"""The API's own message factory and SMTP pool (test sends), created on first use per app."""

from __future__ import annotations

from fastapi import Request

from activities.smtp import Mailer
from domain.email.delivery import MessageFactory


def factory(request: Request) -> MessageFactory:
    state = request.app.state
    if getattr(state, "message_factory", None) is None:
        state.message_factory = MessageFactory(state.settings)
    return state.message_factory


def mailer(request: Request) -> Mailer:
    state = request.app.state
    if getattr(state, "mailer", None) is None:
        state.mailer = Mailer(state.settings, size=2)
    return state.mailer
