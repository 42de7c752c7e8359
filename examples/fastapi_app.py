#!/usr/bin/env python3
"""A FastAPI app over a QuantumORM model on Redis: CRUD, a filtered list with keyset
pagination, and the model's change events as server-sent events.

The request and response schemas are generated from the model with
``Product.pydantic_model()``, so the OpenAPI schema, the request validation (422) and the
JSON of the responses follow the model's fields: prices (``DecimalField``) travel as exact
decimal strings, never as floats.

Run it (needs ``pip install 'quantumorm[redis,pydantic]' fastapi uvicorn``)::

    QUANTUMORM_URL=redis://127.0.0.1:6379/0 uvicorn fastapi_app:app --app-dir examples

The URL comes from ``$QUANTUMORM_URL``, else ``$REDIS_URL``, else ``redis://localhost:6379/0``.
Every key the app writes lives under the ``fastapi_example`` namespace.

Endpoints:

* ``POST /products`` (201; 409 if the id or the SKU is taken; 422 if invalid),
  ``GET /products/{id}`` (404), ``PUT /products/{id}`` (404; 409 if the SKU is taken, or if
  ``?version=`` is given and the stored document has moved on), ``DELETE /products/{id}``
  (204; 404; 409 on a version mismatch). Each product carries its ``ETag`` (the version).
* ``GET /products?tag=&min_price=&max_price=&limit=&after=``: ordered by price, then id;
  the answer's ``next`` is the cursor of the next page (``after=``), null on the last one.
  Keyset pagination: inserts between requests never shift or repeat rows.
* ``GET /products/events?since=&limit=&wait=``: ``text/event-stream``; each event's ``id:``
  is the feed position to resume from (``since=`` or the ``Last-Event-ID`` header);
  ``since=0`` starts at the oldest kept event, no ``since`` at the first new one. The stream
  ends after ``limit`` events or ``wait`` seconds without one, when they are given.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from quantumorm import (
    ArrayField,
    DateTimeField,
    DecimalField,
    Document,
    DuplicateIdError,
    IntField,
    QueryError,
    StringField,
    UniqueViolation,
    ValidationError,
    VersionConflict,
    create_connection,
)
from quantumorm.events import ChangeEvent, ChangeFeed

DEFAULT_URL = "redis://localhost:6379/0"
CONNECTION = "fastapi_example"


def redis_url() -> str:
    return os.environ.get("QUANTUMORM_URL") or os.environ.get("REDIS_URL") or DEFAULT_URL


def now() -> datetime:
    return datetime.now(timezone.utc)


class Product(Document):
    name: StringField = StringField(required=True, min_length=1, max_length=80)
    sku: StringField = StringField(required=True, unique=True, max_length=32,
                                   regex=r"[A-Z0-9-]+")
    price: DecimalField = DecimalField(required=True, min_value=0, indexed=True)
    stock: IntField = IntField(default=0, min_value=0)
    tags: ArrayField[str] = ArrayField(StringField(max_length=20), default=list, indexed=True)
    created: DateTimeField = DateTimeField(default=now)

    class Meta:
        collection = "products"
        namespace = "fastapi_example"
        changes_document = True  # each event carries the document as written
        partitions = 1  # one change stream: an event's id is a position to resume from


# The schemas, generated from the model: a new product may choose its id; an update sets
# every field but the id and the creation time; a response has them all.
ProductCreate = Product.pydantic_model(exclude=["created"], name="ProductCreate")
ProductUpdate = Product.pydantic_model(exclude=["id", "created"], name="ProductUpdate")
ProductOut = Product.pydantic_model(name="ProductOut")


class ProductPage(BaseModel):
    items: list[ProductOut]  # type: ignore[valid-type]
    next: str | None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with create_connection(backend="redis", url=redis_url(), name=CONNECTION,
                                 make_default=True):
        yield


app = FastAPI(title="QuantumORM products", lifespan=lifespan)


def _out(doc: Product) -> Any:
    return ProductOut.model_validate(doc.to_dict())


def _conflict(exc: Exception) -> HTTPException:
    return HTTPException(409, detail=str(exc))


def _invalid(exc: ValidationError) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", name], "msg": "; ".join(messages)}
                                      for name, messages in exc.errors.items()])


async def _load(id: str) -> Product:
    try:
        return await Product.objects.get(id=id)
    except Product.DoesNotExist:
        raise HTTPException(404, detail=f"no product {id!r}") from None


def _check_version(doc: Product, version: int | None) -> None:
    if version is not None and doc.version != version:
        raise HTTPException(409, detail=f"product {doc.id!r} is at version {doc.version}, "
                                        f"not {version}")


@app.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: ProductCreate, response: Response) -> Any:  # type: ignore[valid-type]
    try:
        doc = Product.from_pydantic(body)
        await doc.save()
    except ValidationError as exc:
        raise _invalid(exc) from None
    except (DuplicateIdError, UniqueViolation) as exc:
        raise _conflict(exc) from None
    response.headers["ETag"] = str(doc.version)
    return _out(doc)


@app.get("/products", response_model=ProductPage)
async def list_products(
    tag: str | None = None,
    min_price: Annotated[Decimal | None, Query(ge=0)] = None,
    max_price: Annotated[Decimal | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> Any:
    query = Product.objects.order_by("price")
    if tag is not None:
        query = query.filter(tags__contains=tag)
    if min_price is not None:
        query = query.filter(price__gte=min_price)
    if max_price is not None:
        query = query.filter(price__lte=max_price)
    try:
        page = await query.paginate(per_page=limit, after=after)
    except QueryError as exc:  # a malformed cursor, or one of another listing
        raise HTTPException(422, detail=[{"loc": ["query", "after"], "msg": str(exc)}]) \
            from None
    return ProductPage(items=[_out(doc) for doc in page.items], next=page.next_cursor)


@app.get("/products/events")
async def product_events(
    since: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    wait: Annotated[float | None, Query(gt=0, le=3600)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    feed = Product.objects.changes(since=since or last_event_id, wait=wait)
    try:
        first = await feed.read(0)  # a malformed position is a 422 now, not a broken stream
    except ValueError as exc:
        raise HTTPException(422, detail=[{"loc": ["query", "since"], "msg": str(exc)}]) \
            from None
    return StreamingResponse(_stream(feed, first, limit), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


async def _stream(feed: ChangeFeed[Product], first: list[ChangeEvent[Product]],
                  limit: int | None) -> AsyncIterator[str]:
    async def events() -> AsyncIterator[ChangeEvent[Product]]:
        for event in first:
            yield event
        async for event in feed:  # ends after ``wait`` seconds without one, if given
            yield event

    sent = 0
    async with aclosing(events()) as each:
        async for event in each:
            yield _sse(event)
            sent += 1
            if limit is not None and sent >= limit:
                return


def _sse(event: ChangeEvent[Product]) -> str:
    document = event.document
    data = {"op": event.op, "id": event.id, "version": event.version,
            "changed": None if event.changed is None else list(event.changed),
            "document": None if document is None else document.to_dict(json=True)}
    # (one partition: an event's stream id is the feed position just after it, which
    # ``since=`` and ``Last-Event-ID`` resume from)
    return f"id: {event.stream_id}\nevent: {event.op}\ndata: {json.dumps(data)}\n\n"


@app.get("/products/{id}", response_model=ProductOut)
async def read_product(id: str, response: Response) -> Any:
    doc = await _load(id)
    response.headers["ETag"] = str(doc.version)
    return _out(doc)


@app.put("/products/{id}", response_model=ProductOut)
async def update_product(id: str, body: ProductUpdate, response: Response,  # type: ignore[valid-type]
                         version: int | None = None) -> Any:
    doc = await _load(id)
    _check_version(doc, version)
    values = Product.from_pydantic(body)  # validated; its values replace the stored ones
    for name in ProductUpdate.model_fields:
        setattr(doc, name, getattr(values, name))
    try:
        await doc.save()  # a compare-and-set on the version it was loaded at
    except ValidationError as exc:
        raise _invalid(exc) from None
    except (VersionConflict, UniqueViolation) as exc:
        raise _conflict(exc) from None
    response.headers["ETag"] = str(doc.version)
    return _out(doc)


@app.delete("/products/{id}", status_code=204)
async def delete_product(id: str, version: int | None = None) -> Response:
    doc = await _load(id)
    _check_version(doc, version)
    try:
        if not await doc.delete():
            raise HTTPException(404, detail=f"no product {id!r}")
    except VersionConflict as exc:
        raise _conflict(exc) from None
    return Response(status_code=204)
