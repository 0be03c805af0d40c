"""The built-in SMTP capture server for dev mode: accepts every message and keeps it in a Maildir.

The envelope (MAIL FROM / RCPT TO) is kept as ``X-Envelope-*`` headers on top, so what the server was
asked to deliver, not just what the headers say, can be inspected.

Like a real mailbox provider, it keeps one copy per Message-ID: a message delivered again with the same
Message-ID (a sender retrying after a crash) is accepted and counted in ``duplicates``, not stored.

Given an ``unsubscribe_mailbox`` (``journeys dev`` passes one when ``JOURNEYS_MAIL_UNSUBSCRIBE_MAILTO`` is
set), a message for that address is also handed to it once stored, before the server answers.
"""

from __future__ import annotations

import asyncio
import mailbox
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

if TYPE_CHECKING:
    from runtime.unsubscribe_mailbox import UnsubscribeMailbox


class MaildirHandler:
    def __init__(self, directory: Path, unsubscribe_mailbox: UnsubscribeMailbox | None = None):
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self._maildir = mailbox.Maildir(directory, create=True)
        self.received = 0
        self.duplicates = 0
        self._seen: set[bytes] = set()
        self._unsubscribe_mailbox = unsubscribe_mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        message_id = _message_id(content)
        if message_id is not None:
            if message_id in self._seen:
                self.duplicates += 1
                return "250 Message accepted for delivery (duplicate Message-ID)"
            self._seen.add(message_id)
        stamp = (
            f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        # Once a Message-ID is marked seen, the message must be stored even if the client goes away
        # now (aiosmtpd cancels this coroutine when the connection drops): shield the write.
        await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(self._store, stamp + content)))
        if self._unsubscribe_mailbox is not None and self._unsubscribe_mailbox.takes(envelope.rcpt_tos):
            await self._unsubscribe_mailbox.deliver(content)
        return "250 Message accepted for delivery"

    def _store(self, data: bytes) -> None:
        self._maildir.add(data)
        self.received += 1


def _message_id(content: bytes) -> bytes | None:
    head = content.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip()
    return None


async def start(
    host: str,
    port: int,
    directory: Path,
    *,
    smtputf8: bool = True,
    unsubscribe_mailbox: UnsubscribeMailbox | None = None,
) -> tuple[asyncio.AbstractServer, MaildirHandler]:
    """Listen on ``host:port``. It offers SMTPUTF8 as most providers do, so a test send to a mailbox
    such as ``zoé@example.com`` arrives in dev; ``smtputf8=False`` plays a server that lacks it."""
    handler = MaildirHandler(directory, unsubscribe_mailbox)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="journeys-capture",
            data_size_limit=25 * 1024 * 1024,
            enable_SMTPUTF8=smtputf8,
        ),
        host=host,
        port=port,
    )
    return server, handler


def read_mailbox(directory: Path, limit: int = 100) -> list[dict[str, Any]]:
    """Captured messages, newest first, as raw headers and decoded bodies."""
    if not directory.exists():
        return []
    maildir = mailbox.Maildir(directory, create=False)
    items = []
    for key in maildir.iterkeys():
        path = Path(directory, "new", key) if Path(directory, "new", key).exists() else None
        raw = maildir.get_bytes(key)
        items.append((path.stat().st_mtime_ns if path else 0, key, raw))
    items.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [_describe(key, raw) for _, key, raw in items[:limit]]


def _describe(key: str, raw: bytes) -> dict[str, Any]:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        "id": key,
        "envelope_from": message.get("X-Envelope-From"),
        "envelope_to": [a.strip() for a in (message.get("X-Envelope-To") or "").split(",") if a.strip()],
        "message_id": message.get("Message-ID"),
        "from": message.get("From"),
        "to": message.get("To"),
        "subject": message.get("Subject"),
        "headers": [[name, str(value)] for name, value in message.items()],
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
        "raw": raw.decode("utf-8", "replace"),
    }
