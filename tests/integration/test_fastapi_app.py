"""examples/fastapi_app.py under FastAPI's TestClient, on the test Redis: CRUD with its
404/409/422 answers, the filtered list with keyset pagination, the OpenAPI schema from the
generated pydantic models, and the change events as server-sent events."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

import quantumorm

APP = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load()


@pytest.fixture
def client(redis_url: str, redis_client: redis.Redis,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    redis_client.flushdb()
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("QUANTUMORM_URL", redis_url)
    try:
        with TestClient(example.app) as test_client:  # runs the app's lifespan
            yield test_client
    finally:
        quantumorm.close_all()


def product(sku: str, price: str, **values: Any) -> dict[str, Any]:
    return {"name": f"product {sku}", "sku": sku, "price": price, **values}


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/products", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


# -- CRUD -------------------------------------------------------------------------------------

@pytest.mark.redis
def test_create_read_update_delete(client: TestClient) -> None:
    response = client.post("/products", json=product("A-1", "19.99", tags=["x"], stock=3))
    assert response.status_code == 201
    version = response.headers["etag"]
    created = response.json()
    assert created["price"] == "19.99"  # exact, as a string
    assert (created["sku"], created["stock"], created["tags"]) == ("A-1", 3, ["x"])
    assert created["id"] and created["created"].endswith("Z")

    response = client.get(f"/products/{created['id']}")
    assert response.status_code == 200 and response.json() == created
    assert response.headers["etag"] == version

    changed = product("A-1", "0.1000000000000000055511151231257827", stock=4)
    response = client.put(f"/products/{created['id']}?version={version}", json=changed)
    assert response.status_code == 200, response.text
    new_version = response.headers["etag"]
    assert new_version != version
    updated = response.json()
    assert updated["price"] == "0.1000000000000000055511151231257827"
    assert (updated["stock"], updated["tags"], updated["created"]) == (4, [], created["created"])
    stored = example.Product.objects.get_sync(id=created["id"])
    assert stored.price == Decimal("0.1000000000000000055511151231257827")
    assert stored.version == int(new_version)

    stale = client.delete(f"/products/{created['id']}?version={version}")
    assert stale.status_code == 409
    response = client.delete(f"/products/{created['id']}?version={new_version}")
    assert response.status_code == 204
    assert client.get(f"/products/{created['id']}").status_code == 404
    assert client.delete(f"/products/{created['id']}").status_code == 404
    assert client.put(f"/products/{created['id']}", json=changed).status_code == 404


@pytest.mark.redis
def test_conflicts_are_409(client: TestClient) -> None:
    first = create(client, product("B-1", "1", id="b1"))
    create(client, product("B-2", "2", id="b2"))
    taken_id = client.post("/products", json=product("B-3", "3", id="b1"))
    assert taken_id.status_code == 409 and "b1" in taken_id.text
    taken_sku = client.post("/products", json=product("B-1", "3"))
    assert taken_sku.status_code == 409
    update_to_taken = client.put("/products/b2", json=product("B-1", "2"))
    assert update_to_taken.status_code == 409
    stale = client.put("/products/b1?version=7", json=product("B-1", "5"))
    assert stale.status_code == 409 and "not 7" in stale.text
    assert client.delete("/products/b1?version=7").status_code == 409
    assert client.get("/products/b1").json() == first  # nothing changed


@pytest.mark.redis
def test_invalid_input_is_422(client: TestClient) -> None:
    cases = [
        (product("C-1", "1.5"), "price"),  # ok as a string...
        ({**product("C-1", "1"), "price": 1.5}, "price"),  # ...a float is not exact
        (product("C-1", "-1"), "price"),
        (product("c-lower", "1"), "sku"),
        ({**product("C-1", "1"), "name": "x" * 81}, "name"),
        ({**product("C-1", "1"), "stock": "3"}, "stock"),
        ({**product("C-1", "1"), "tags": ["t" * 21]}, "tags"),
        ({**product("C-1", "1"), "colour": "red"}, "colour"),
        ({"name": "no sku or price"}, "sku"),
    ]
    for body, field in cases[1:]:
        response = client.post("/products", json=body)
        assert response.status_code == 422, body
        assert field in [error["loc"][-1] for error in response.json()["detail"]], body
    assert client.post("/products", json=cases[0][0]).status_code == 201
    assert client.put("/products/none", json={"name": "x"}).status_code == 422
    assert example.Product.objects.count_sync() == 1


@pytest.mark.redis
def test_openapi_schemas_come_from_the_model(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    create_schema = schemas["ProductCreate"]
    assert set(create_schema["required"]) == {"name", "sku", "price"}
    assert create_schema["properties"]["sku"]["maxLength"] == 32
    assert {"type": "integer"} in create_schema["properties"]["price"]["anyOf"]
    assert "id" not in schemas["ProductUpdate"]["properties"]
    assert "created" in schemas["ProductOut"]["properties"]


# -- the filtered list, keyset pagination --------------------------------------------------

def pages(client: TestClient, query: str) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    after: str | None = None
    while True:
        params = query + (f"&after={after}" if after else "")
        response = client.get(f"/products?{params}")
        assert response.status_code == 200, response.text
        body = response.json()
        found.append(body["items"])
        after = body["next"]
        if after is None:
            return found


@pytest.mark.redis
def test_filtered_list_with_keyset_pagination(client: TestClient) -> None:
    prices = ["5", "1.25", "3", "3", "10", "0.5", "7.75"]
    for number, price in enumerate(prices):
        tags = ["even"] if number % 2 == 0 else ["odd"]
        create(client, product(f"D-{number}", price, id=f"d{number}", tags=tags))

    listed = pages(client, "limit=3")
    assert [len(page) for page in listed] == [3, 3, 1]
    rows = [item for page in listed for item in page]
    expected = sorted(((Decimal(p), f"d{n}") for n, p in enumerate(prices)))
    assert [(Decimal(r["price"]), r["id"]) for r in rows] == expected

    even = [r["id"] for page in pages(client, "limit=2&tag=even") for r in page]
    assert even == ["d2", "d0", "d6", "d4"]  # 3, 5, 7.75, 10
    ranged = [r["price"] for page in pages(client, "limit=2&min_price=1&max_price=5")
              for r in page]
    assert ranged == ["1.25", "3", "3", "5"]


@pytest.mark.redis
def test_keyset_pages_do_not_shift_when_rows_are_inserted(client: TestClient) -> None:
    for number in range(4):
        create(client, product(f"E-{number}", str(number + 1), id=f"e{number}"))
    first = client.get("/products?limit=2").json()
    assert [r["id"] for r in first["items"]] == ["e0", "e1"]
    create(client, product("E-9", "0.5", id="e9"))  # before the cursor: not seen
    create(client, product("E-8", "2.5", id="e8"))  # after it: seen once, in order
    rest = client.get(f"/products?limit=10&after={first['next']}").json()
    assert [r["id"] for r in rest["items"]] == ["e8", "e2", "e3"]
    assert rest["next"] is None
    bad = client.get("/products?after=not-a-cursor")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "after"]
    assert client.get("/products?limit=0").status_code == 422
    assert client.get("/products?min_price=abc").status_code == 422


# -- change events over server-sent events --------------------------------------------------

def read_events(client: TestClient, url: str, **headers: str) -> list[dict[str, Any]]:
    """The events of one (bounded) stream: its ``limit`` or ``wait`` ends it."""
    events: list[dict[str, Any]] = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
                continue
            key, _, value = line.partition(": ")
            current[key] = json.loads(value) if key == "data" else value
    return events


@pytest.mark.redis
def test_change_events_stream_as_server_sent_events(client: TestClient) -> None:
    create(client, product("F-1", "1.10", id="f1"))
    create(client, product("F-2", "2", id="f2"))
    updated = client.put("/products/f1", json=product("F-1", "1.20"))
    assert updated.status_code == 200
    assert client.delete("/products/f2").status_code == 204

    events = read_events(client, "/products/events?since=0&limit=4")
    assert [(e["event"], e["data"]["id"]) for e in events] == [
        ("create", "f1"), ("create", "f2"), ("update", "f1"), ("delete", "f2")]
    assert events[2]["data"]["version"] == int(updated.headers["etag"])
    assert events[0]["data"]["document"]["price"] == "1.10"  # the document, JSON-safe
    assert events[2]["data"]["document"]["price"] == "1.20"
    assert "price" in events[2]["data"]["changed"]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == 4

    # resume after the second event (the id is the position): the two after it, then more
    resumed = read_events(client, f"/products/events?since={ids[1]}&limit=2")
    assert [e["id"] for e in resumed] == ids[2:]
    create(client, product("F-3", "3", id="f3"))
    latest = read_events(client, "/products/events?limit=1", **{"Last-Event-ID": ids[3]})
    assert [(e["event"], e["data"]["id"]) for e in latest] == [("create", "f3")]

    # nothing new: the stream ends after ``wait`` seconds without an event
    assert read_events(client, "/products/events?wait=0.05") == []
    assert client.get("/products/events?since=bogus").status_code == 422
