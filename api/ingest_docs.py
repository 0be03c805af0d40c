"""What the OpenAPI document says about ``/v1``: the request bodies and the write key.

The ingestion routes read their bodies themselves (one pass, Segment's limits, a 400 naming each call),
so FastAPI cannot see their models. The document takes the same models' JSON Schema, so ``/docs`` and
generated clients show what a call may carry.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from domain.events.schemas import CALL_TYPES, Batch

WRITE_KEY = "WriteKey"
_REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's schema for a request (the shape it validates); models it uses go into components."""
    schema = model.model_json_schema(ref_template=_REF, mode="validation")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _body(ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {"application/json": {"schema": ref}}}


def document(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the ``/v1`` bodies and their write-key security to a generated document (in place)."""
    components = openapi.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})[WRITE_KEY] = {
        "type": "http",
        "scheme": "basic",
        "description": "A source's write key as the user name, no password (as Segment libraries send "
        "it). It may instead travel in the body as `writeKey`.",
    }
    batch = (Batch, "Up to 500 KB; each call at most 32 KB. All calls are stored, or none.")
    bodies = {"batch": batch, "import": batch}
    for kind, model in CALL_TYPES.items():
        bodies[kind] = (model, "At most 32 KB. `type` is implied by the path.")
    for kind, (model, description) in bodies.items():
        operation = openapi["paths"].get(f"/v1/{kind}", {}).get("post")
        if operation is None:
            continue
        operation["requestBody"] = _body(_schema(model, schemas), description)
        operation["security"] = [{WRITE_KEY: []}]
        operation.setdefault("responses", {})["400"] = {
            "description": "Invalid input: each problem names the call (`index` in a batch) and the field."
        }
    return openapi
