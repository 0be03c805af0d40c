"""Reading what an inbound-mail provider posts for a message to the unsubscribe mailbox: the raw
message (``message/rfc822``), Postmark's JSON, or SendGrid's and Mailgun's forms.

The body is read here, never by FastAPI, and at most ``inbound_mail_max_bytes`` of it whatever the
shape, refused as it is read; JSON is parsed by orjson (which bounds nesting), forms by the parsers
Starlette uses (python-multipart) under limits of fields and files. What the fields mean is the
domain's (``domain/subscriptions/inbound_providers.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import orjson
from fastapi import HTTPException, Request
from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from api.bodies import read_capped
from domain.subscriptions import inbound_providers
from domain.subscriptions.unsubscribe_mail import (
    MailText,
    MessageTooLarge,
    NotAMessage,
    check_size,
    too_large,
)

RAW_MESSAGE = "message/rfc822"
JSON = "application/json"
MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
MEDIA_TYPES = (RAW_MESSAGE, JSON, MULTIPART, URLENCODED)
# A provider's post has a few dozen fields (Mailgun adds one per header of the message) and a file
# per attachment; the size cap bounds the rest.
MAX_FORM_FIELDS = 500
MAX_FORM_FILES = 50
# The answer that stops a provider retrying a post that can never be read: any other 4xx is posted
# again for hours or days. Postmark stops at a 403 (its JSON); Mailgun at a 406, and SendGrid retries
# only a 5xx (their forms). A raw message's sender (an MTA piping to curl -f) bounces any 4xx.
REFUSED_FOR_GOOD = {JSON: 403, MULTIPART: 406, URLENCODED: 406}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


@contextmanager
def refused_for_good(request: Request) -> Iterator[None]:
    """A post that is no message, or too large, answered with the status that stops its provider's
    retries (the error and its detail as they were); a transient failure (5xx) stays retried."""
    try:
        yield
    except (NotAMessage, MessageTooLarge) as exc:
        if status := REFUSED_FOR_GOOD.get(_media_type(request)):
            exc.status_code = status
        raise


async def read_inbound_mail(request: Request, limit: int) -> bytes | MailText:
    """The message the post carries: raw bytes, or the subject and text a provider parsed out."""
    media_type = _media_type(request)
    if media_type not in MEDIA_TYPES:
        problem = (
            f"must be {RAW_MESSAGE} (the raw message), {JSON} (Postmark) or a form (SendGrid,"
            f" Mailgun: {MULTIPART}, {URLENCODED}), not {media_type!r}"
        )
        raise HTTPException(415, {"field": "Content-Type", "problem": problem})
    body = await _read_body(request, limit)
    if media_type == RAW_MESSAGE:
        return body
    if media_type == JSON:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise NotAMessage({"field": "body", "problem": f"is not JSON: {exc}"}) from None
        return inbound_providers.from_postmark(document)
    return inbound_providers.from_form(await _form(request, body, limit, multipart=media_type == MULTIPART))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_size(int(declared), limit)
    body = await read_capped(request, limit)  # stops reading at the limit, whatever Content-Length said
    if body is None:
        raise too_large(limit)
    return body


async def _form(request: Request, body: bytes, limit: int, *, multipart: bool) -> dict[str, str]:
    """The form's fields, the first value of each; the content of a file the providers' fields name as
    text (a provider may post the raw message as one), other files (attachments) not read."""

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        if multipart:
            parser = MultiPartParser(
                request.headers,
                stream(),
                max_files=MAX_FORM_FILES,
                max_fields=MAX_FORM_FIELDS,
                max_part_size=limit,
            )
        else:
            parser = FormParser(request.headers, stream(), max_fields=MAX_FORM_FIELDS, max_part_size=limit)
        # python-multipart spends ~0.5 s of CPU on 1 MiB of "&&&…": off the event loop, as the raw
        # message's parsing is (the body is in memory, so the parse does no I/O of its own).
        form = await asyncio.to_thread(asyncio.run, parser.parse())
    except (MultiPartException, FormParserError) as exc:
        problem = f"is not a well-formed form: {getattr(exc, 'message', None) or exc}"
        raise NotAMessage({"field": "body", "problem": problem}) from None
    try:
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if name in fields:
                continue
            if isinstance(value, UploadFile):
                if name not in inbound_providers.READ_FIELDS:
                    continue  # an attachment
                value = (await value.read()).decode("utf-8", "surrogateescape")
            fields[name] = value
        return fields
    finally:
        await form.close()
