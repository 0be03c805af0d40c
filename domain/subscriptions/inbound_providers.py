"""How the inbound-mail providers wrap a message they received at the unsubscribe mailbox, unwrapped
to what the token finder reads: the raw message when the post carries it, else its subject and text.

- Postmark posts JSON: ``RawEmail`` (with "Include raw email content in JSON payload" on), and always
  ``From``, ``Subject``, ``TextBody``.
- SendGrid Inbound Parse posts a multipart form: ``email`` ("POST the raw, full MIME message"), else
  ``from``, ``subject``, ``text``.
- Mailgun routes' ``forward()`` posts a form (multipart, or urlencoded without attachments):
  ``body-mime`` (at a URL ending in ``mime``), else ``sender``, ``from``, ``subject``, ``body-plain``.

What tells one mail from another in the parsed fields: the Message-ID header, in Postmark's
``Headers`` (else its own ``MessageID`` for the message), in Mailgun's ``Message-Id`` field or
``message-headers``, in the ``headers`` block SendGrid posts.

A post is recognised by its fields, as a raw message is by its From header: one with neither a raw
message nor a sender is none of these (a misconfigured webhook, a wrong URL) and is refused naming
what is missing; a well-formed one whose text asks nothing is for the token finder to ignore.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.parser import HeaderParser
from email.policy import compat32

from domain.subscriptions.unsubscribe_mail import PARSED_BYTES, MailText, NotAMessage

# Form fields holding the raw message: SendGrid's, Mailgun's.
RAW_FIELDS = ("email", "body-mime")
# Form fields naming the sender, one of which every provider's parsed post has.
SENDER_FIELDS = ("from", "sender")
# Form fields holding the plain text: SendGrid's, Mailgun's.
TEXT_FIELDS = ("text", "body-plain")
READ_FIELDS = frozenset((*RAW_FIELDS, *SENDER_FIELDS, *TEXT_FIELDS, "subject"))


def from_postmark(document: object) -> bytes | MailText:
    """The raw message of a Postmark inbound post, or its Subject and TextBody."""
    if not isinstance(document, dict):
        raise NotAMessage({"field": "body", "problem": "must be a JSON object (Postmark's inbound webhook)"})
    raw = _string(document, "RawEmail")
    if raw:
        return _raw(raw)
    if "From" not in document:
        raise NotAMessage(
            {
                "field": "From",
                "problem": "is missing: not a Postmark inbound post (From, Subject, TextBody or RawEmail)",
            }
        )
    sender = _string(document, "From")
    return MailText(
        subject=_string(document, "Subject"),
        text=_string(document, "TextBody"),
        message_id=_postmark_message_id(document),
        sender=sender,
    )


def _postmark_message_id(document: dict) -> str:
    headers = document.get("Headers")
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, dict) and str(header.get("Name", "")).lower() == "message-id":
            return str(header.get("Value", ""))
    postmark_id = document.get("MessageID")
    return f"postmark:{postmark_id}" if isinstance(postmark_id, str) and postmark_id else ""


def from_form(fields: Mapping[str, str]) -> bytes | MailText:
    """The raw message of a SendGrid or Mailgun post, or its subject and plain text."""
    for name in RAW_FIELDS:
        if fields.get(name):
            return _raw(fields[name])
    if not any(name in fields for name in SENDER_FIELDS):
        problem = (
            "is a form with neither a raw message (email, body-mime) nor a sender (from, sender):"
            " not an inbound post of SendGrid or Mailgun"
        )
        raise NotAMessage({"field": "body", "problem": problem})
    text = next((fields[name] for name in TEXT_FIELDS if fields.get(name)), "")
    sender = next((fields[name] for name in SENDER_FIELDS if fields.get(name)), "")
    return MailText(
        subject=fields.get("subject", ""), text=text, message_id=_form_message_id(fields), sender=sender
    )


def _form_message_id(fields: Mapping[str, str]) -> str:
    for name, value in fields.items():  # Mailgun posts the headers as fields too ("Message-Id")
        if name.lower() == "message-id":
            return value
    if listed := fields.get("message-headers"):  # Mailgun's list of [name, value], as JSON
        try:
            pairs = json.loads(listed)
        except (ValueError, RecursionError):
            pairs = None
        for pair in pairs if isinstance(pairs, list) else []:
            if isinstance(pair, list) and len(pair) == 2 and str(pair[0]).lower() == "message-id":
                return str(pair[1])
    if headers := fields.get("headers"):  # SendGrid's header block, which only the raw headers need
        return str(HeaderParser(policy=compat32).parsestr(headers[:PARSED_BYTES]).get("Message-ID", ""))
    return ""


def _string(document: dict, name: str) -> str:
    value = document.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotAMessage({"field": name, "problem": f"must be a string, not {type(value).__name__}"})
    return value


def _raw(text: str) -> bytes:
    # The providers put the message in a text field: what was 8-bit in it comes back as UTF-8, which
    # the parser reads as any 8-bit message; the request is ASCII either way.
    return text.encode("utf-8", "surrogateescape")
