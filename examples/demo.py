#!/usr/bin/env python3
"""QuantumORM showcase: typed documents in Redis with secondary indexes.

Run it with ``./run-demo`` (which installs redis-server if needed), or directly::

    .venv/bin/python examples/demo.py                            # starts a private redis-server
    QUANTUMORM_URL=redis://127.0.0.1:6379/0 .venv/bin/python examples/demo.py   # your server

``QUANTUMORM_URL`` (or else ``REDIS_URL``) names the server. Without either, the demo starts
its own ``redis-server`` on a free loopback port, with persistence off and a temporary working
directory, and stops it when it exits (normally, on an exception or on Ctrl-C). With a URL
given, every key the demo writes lives under the ``demo`` namespace
(``{demo:customers:p0}:...``, ``{demo:orders:p0}:...``); those two collections are dropped at
start, and nothing else on the server is touched.

The main part uses the async API (``await``, ``async for``); the last section shows the
blocking twins (``save_sync()``, ``all_sync()``, plain ``for``).
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from quantumorm import (
    ArrayField,
    Connection,
    DateTimeField,
    DecimalField,
    Document,
    JSONField,
    Q,
    StringField,
    UniqueViolation,
    ValidationError,
    VersionConflict,
    close_all,
    create_connection,
)

T = TypeVar("T")

SEED = 20240601
N_CUSTOMERS = 2_000
N_ORDERS = 5_000
NAMESPACE = "demo"
UTC = dt.timezone.utc


# =============================================================================================
# Models
# =============================================================================================


class DemoDocument(Document):
    """Abstract base: every demo model lives in the ``demo`` namespace."""

    class Meta:
        abstract = True
        namespace = NAMESPACE


class Customer(DemoDocument):
    email: StringField = StringField(required=True, unique=True, max_length=120,
                                     regex=r"[^@\s]+@[^@\s]+\.[a-z]{2,}")
    name: StringField = StringField(required=True, min_length=2, max_length=80, indexed=True)
    country: StringField = StringField(required=True, min_length=2, max_length=2, indexed=True)
    tier: StringField = StringField(choices=("free", "pro", "enterprise"), default="free",
                                    indexed=True)
    signed_up: DateTimeField = DateTimeField(required=True, indexed=True)
    credit: DecimalField = DecimalField(min_value=0, indexed=True)  # None = no credit line
    tags: ArrayField[str] = ArrayField(StringField(max_length=20), indexed=True, default=list)
    referrer: StringField = StringField()  # not indexed: queries on it are post-filtered

    class Meta:
        collection = "customers"
        indexes = [("country", "tier")]  # compound: country = X and tier = Y


class Order(DemoDocument):
    customer_id: StringField = StringField(required=True, indexed=True)
    total: DecimalField = DecimalField(required=True, min_value=0)  # not indexed
    status: StringField = StringField(choices=("pending", "paid", "shipped", "cancelled"),
                                      default="pending", indexed=True)
    placed_at: DateTimeField = DateTimeField(required=True)
    items: JSONField = JSONField(default=list)

    class Meta:
        collection = "orders"
        indexes = [{"name": "status_placed", "fields": ("status", "placed_at")}]


MODELS: tuple[type[Document], ...] = (Customer, Order)


# =============================================================================================
# Output helpers
# =============================================================================================

WIDTH = 78


def section(title: str) -> None:
    print()
    print(title)
    print("=" * WIDTH)


def step(label: str, ms: float | None = None, detail: str = "") -> None:
    timing = f"{ms:8.2f} ms" if ms is not None else " " * 11
    text = f"{label}"
    if detail:
        text += f"  ->  {detail}"
    print(f"  {timing}  {text}")


def note(text: str, indent: int = 15) -> None:
    print(" " * indent + text)


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = await awaitable
    return result, (time.perf_counter() - start) * 1000


def timed_sync(call: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1000


def money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def brief(c: Customer) -> str:
    return f"#{c.id} {c.name} <{c.email}> {c.country}/{c.tier} credit={money(c.credit)}"


# =============================================================================================
# A private redis-server
# =============================================================================================


class PrivateRedis:
    """A throwaway redis-server on 127.0.0.1, no persistence, in a temporary directory."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="quantumorm-demo-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 3) -> None:
        """Start the server and wait for PING. A free port can be taken by another process
        before redis-server binds it: then try another one."""
        for attempt in range(attempts):
            if attempt:
                self.port = _free_port()
            log = os.path.join(self.dir, "redis.log")
            self.proc = subprocess.Popen(
                [self.executable, "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--dir", self.dir, "--logfile", log,
                 "--daemonize", "no", "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # Own process group: Ctrl-C reaches the demo only, which then stops the server.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            atexit.register(self.stop)
            if self._wait_ready():
                return
            self.stop(quiet=True)
        raise RuntimeError(f"redis-server did not start on 127.0.0.1 after {attempts} "
                           f"attempts; its log:\n{_tail(log)}")

    def _wait_ready(self) -> bool:
        """True once the server answers PING; False if it exited (port taken?)."""
        import redis

        assert self.proc is not None
        deadline = time.monotonic() + 10
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5,
                             socket_timeout=0.5)
        try:
            while self.proc.poll() is None:
                try:
                    if client.ping():
                        return True
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING within 10 s; its "
                                       f"log:\n{_tail(os.path.join(self.dir, 'redis.log'))}")
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self, quiet: bool = False) -> None:
        """Stop the server (by its pid) and remove its directory; safe to call twice.
        ``quiet``: between start attempts (no message, the directory is kept)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM to proc.pid: redis shuts down cleanly
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if not quiet:
                print(f"\nStopped private redis-server (pid {proc.pid}).", flush=True)
        if not quiet:
            shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: have Linux send SIGTERM to redis-server if the demo dies (even by
    SIGKILL), so an interrupted demo never leaves a server behind."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _server_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        return str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()


# =============================================================================================
# Deterministic sample data
# =============================================================================================

FIRST = ["Alice", "Albert", "Alma", "Bruno", "Chloe", "Daniel", "Elena", "Farid", "Grace",
         "Hugo", "Ines", "Jonas", "Keiko", "Liam", "Maya", "Nadia", "Oscar", "Priya", "Quentin",
         "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yusuf", "Zoe"]
LAST = ["Anders", "Becker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen",
        "Ivanova", "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Olsen", "Petrov",
        "Rossi", "Schmidt", "Tanaka", "Weber"]
COUNTRIES = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "ES"]
COUNTRY_WEIGHTS = [18, 14, 22, 12, 8, 8, 10, 8]
TAGS = ["newsletter", "beta", "vip", "b2b", "student", "churn-risk", "early-adopter"]
PRODUCTS = [("keyboard", "49.90"), ("mouse", "19.90"), ("monitor", "229.00"),
            ("usb-hub", "24.50"), ("laptop-stand", "39.00"), ("webcam", "74.99"),
            ("headset", "89.00"), ("cable", "9.99")]
START = dt.datetime(2023, 1, 1, tzinfo=UTC)


def make_customers(rng: random.Random, n: int) -> list[Customer]:
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        tier = rng.choices(["free", "pro", "enterprise"], [70, 24, 6])[0]
        credit = None if rng.random() < 0.08 else Decimal(rng.randrange(0, 100_000)) / 100
        out.append(Customer(
            email=f"{first}.{last}.{i}@example.com".lower(),
            name=f"{first} {last}",
            country=rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0],
            tier=tier,
            signed_up=START + dt.timedelta(minutes=rng.randrange(0, 2 * 365 * 24 * 60)),
            credit=credit,
            tags=sorted(rng.sample(TAGS, rng.choice([0, 1, 1, 2, 3]))),
            referrer=rng.choice([None, None, None, "ads", "partner", "friend"]),
        ))
    return out


def make_orders(rng: random.Random, n: int, customers: list[Customer]) -> list[Order]:
    out = []
    for _ in range(n):
        customer = rng.choice(customers)
        lines: list[dict[str, Any]] = []
        for product, price in rng.sample(PRODUCTS, rng.randint(1, 3)):
            lines.append({"sku": product, "qty": rng.randint(1, 4), "price": price})
        total = sum((Decimal(line["price"]) * line["qty"] for line in lines), Decimal(0))
        placed = customer.signed_up + dt.timedelta(minutes=rng.randrange(0, 120 * 24 * 60))
        out.append(Order(
            customer_id=customer.id,
            total=total,
            status=rng.choices(["pending", "paid", "shipped", "cancelled"], [10, 25, 55, 10])[0],
            placed_at=placed,
            items=lines,
        ))
    return out


# =============================================================================================
# The async tour
# =============================================================================================


async def drop_demo_collections(connection: Connection) -> int:
    """Drop every document of the demo collections (and nothing else): the demo runs any
    number of times on one server."""
    dropped = 0
    for model in MODELS:
        dropped += await model.objects.drop_collection(confirm=True)
    return dropped


async def async_tour(connection: Connection) -> None:
    section("1. Setup")
    dropped, ms = await timed(drop_demo_collections(connection))
    step("dropped the demo collections", ms, f"{dropped} old documents removed")
    for model in MODELS:
        meta = model._meta
        indexes = ", ".join(
            f"{ix.name}{'(' + ','.join(ix.fields) + ')' if ix.compound else ''}"
            f"{' unique' if ix.unique else ''}" for ix in meta.indexes)
        note(f"{model.__name__:<9} {{{meta.namespace}:{meta.collection}}}  indexes: {indexes}",
             indent=15)

    # -- bulk load -----------------------------------------------------------------------
    section("2. Bulk load (bulk_create, 500 documents per round trip)")
    rng = random.Random(SEED)
    customers = make_customers(rng, N_CUSTOMERS)
    created, ms = await timed(Customer.objects.bulk_create(customers))
    step(f"inserted {len(created):,} customers", ms,
         f"{len(created) / (ms / 1000):,.0f} docs/s, ids {created[0].id}..{created[-1].id}")
    orders = make_orders(rng, N_ORDERS, customers)
    created_orders, ms = await timed(Order.objects.bulk_create(orders))
    step(f"inserted {len(created_orders):,} orders", ms,
         f"{len(created_orders) / (ms / 1000):,.0f} docs/s")
    total, ms = await timed(Customer.objects.count())
    step("Customer.objects.count()", ms, f"{total:,}")

    # -- queries -------------------------------------------------------------------------
    section("3. Queries (async API)")

    qs = Customer.objects.filter(country="DE")
    n, ms = await timed(qs.count())
    step('equality: filter(country="DE").count()', ms, f"{n} customers")

    qs = Customer.objects.filter(credit__gte=Decimal("990")).order_by("-credit").limit(5)
    rows, ms = await timed(qs.all())
    step('range: filter(credit__gte=990).order_by("-credit").limit(5)', ms,
         f"{len(rows)} rows")
    for c in rows:
        note(brief(c))

    qs = Customer.objects.filter((Q(tier="enterprise") | Q(tags__contains="vip"))
                                 & ~Q(country="US"))
    n, ms = await timed(qs.count())
    step('(Q(tier="enterprise") | Q(tags__contains="vip")) & ~Q(country="US")', ms,
         f"{n} customers")
    async for c in qs.order_by("name").limit(3):  # async iteration
        note(f"{brief(c)} tags={c.tags}")

    qs = Customer.objects.filter(tags__contains="early-adopter")
    n, ms = await timed(qs.count())
    step('array contains: filter(tags__contains="early-adopter")', ms, f"{n} customers")

    qs = Customer.objects.filter(name__startswith="Al").order_by("name")
    rows, ms = await timed(qs.all())
    names = list(dict.fromkeys(c.name.split()[0] for c in rows))
    step('startswith: filter(name__startswith="Al").order_by("name")', ms,
         f"{len(rows)} customers named {', '.join(names)} ...")

    n, ms = await timed(Customer.objects.filter(credit__isnull=True).count())
    step("isnull: filter(credit__isnull=True).count()", ms, f"{n} without a credit line")

    qs = Customer.objects.filter(country="FR", tier="enterprise").order_by("-signed_up")
    rows, ms = await timed(qs.all())
    explanation = await qs.explain()
    step('compound index: filter(country="FR", tier="enterprise")', ms,
         f"{len(rows)} rows; {explanation.strategy} via {', '.join(explanation.indexes)}")
    for c in rows[:3]:
        note(f"{brief(c)} signed_up={c.signed_up:%Y-%m-%d}")

    n, ms = await timed(Customer.objects.filter(country="JP", tier="pro").count())
    step('count(): filter(country="JP", tier="pro")', ms, f"{n}")
    yes, ms = await timed(Customer.objects.filter(tags__contains="b2b", country="ES").exists())
    step('exists(): tags contains "b2b" and country="ES"', ms, f"{yes}")
    no, ms = await timed(Customer.objects.filter(email="nobody@example.com").exists())
    step('exists(): email="nobody@example.com"', ms, f"{no}")

    some = customers[1234]
    got, ms = await timed(Customer.objects.get(id=some.id))
    step(f"get(id={some.id!r})", ms, brief(got))
    got, ms = await timed(Customer.objects.get(email=some.email))
    step(f"get(email={some.email!r}) (unique index)", ms, f"#{got.id}")
    try:
        await Customer.objects.get(email="nobody@example.com")
    except Customer.DoesNotExist as exc:
        step("get(email='nobody@example.com')", None, f"{type(exc).__qualname__}")

    wanted = [customers[0].id, customers[1].id, "no-such-id", customers[2].id]
    many, ms = await timed(Customer.objects.get_many(wanted))
    step(f"get_many({wanted})", ms,
         "[" + ", ".join("None" if c is None else f"#{c.id}" for c in many) + "]")

    # -- pagination ----------------------------------------------------------------------
    section("4. Pagination")
    base = Customer.objects.filter(country="GB").order_by("-signed_up")
    page, ms = await timed(base.paginate(page=3, per_page=5))
    step("numbered: paginate(page=3, per_page=5)", ms,
         f"page {page.number} of {page.pages}, {page.total} rows in total, "
         f"has_next={page.has_next}")
    for c in page:
        note(f"#{c.id:<5} {c.signed_up:%Y-%m-%d %H:%M}  {c.name}")

    cursor: str | None = None
    seen: list[str] = []
    for number in range(1, 4):
        page, ms = await timed(base.paginate(per_page=4, after=cursor))
        seen += [c.id for c in page if c.id is not None]
        step(f"keyset page {number}: paginate(per_page=4, after=<cursor>)", ms,
             ", ".join(f"#{c.id} {c.signed_up:%Y-%m-%d}" for c in page))
        cursor = page.next_cursor
        note(f"next_cursor = {cursor}")
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "keyset pages overlap"

    # -- projections ---------------------------------------------------------------------
    section("5. Projections: only() and values()")
    rows, ms = await timed(Customer.objects.filter(tier="enterprise", country="IN")
                           .order_by("email").only("email", "tier").limit(3).all())
    step('only("email", "tier")', ms, f"{len(rows)} partial documents")
    for c in rows:
        note(f"#{c.id} email={c.email} tier={c.tier} name={c.name} (not loaded)")
    dicts, ms = await timed(Order.objects.filter(status="pending").order_by("id")
                            .values("customer_id", "total", "status").limit(3).all())
    step('values("customer_id", "total", "status")', ms)
    for d in dicts:
        note(repr(d))

    # -- explain -------------------------------------------------------------------------
    section("6. explain(): how a query is answered")
    qs = Customer.objects.filter(country="DE", credit__gte=Decimal("500")).order_by("-credit")
    explanation, ms = await timed(qs.explain())
    step('Customer: filter(country="DE", credit__gte=500).order_by("-credit")', ms)
    for line in str(explanation).splitlines():
        note(line, indent=17)
    big_orders = Order.objects.filter(total__gte=Decimal("600"))
    explanation, ms = await timed(big_orders.explain())
    step("Order: filter(total__gte=600)  (total is not indexed)", ms)
    for line in str(explanation).splitlines():
        note(line, indent=17)
    n, ms = await timed(big_orders.count())
    step("...its count() (scan + post-filter)", ms, f"{n} orders")

    # -- bulk update / delete ------------------------------------------------------------
    section("7. QuerySet.update() and delete()")
    qs = Customer.objects.filter(tier="free", credit__gte=Decimal("980"))
    before = await qs.count()
    n, ms = await timed(qs.update(tier="pro"))
    step('filter(tier="free", credit__gte=980).update(tier="pro")', ms,
         f"{n} updated (matched {before}); now {await qs.count()} left as free")
    cutoff = dt.datetime(2023, 7, 1, tzinfo=UTC)
    old_cancelled = Order.objects.filter(status="cancelled", placed_at__lt=cutoff)
    before = await old_cancelled.count()
    n, ms = await timed(old_cancelled.delete())
    step('Order: filter(status="cancelled", placed_at__lt=2023-07-01).delete()', ms,
         f"{n} deleted (matched {before}); {await Order.objects.count():,} orders left")

    # -- errors --------------------------------------------------------------------------
    section("8. Errors that carry their facts")
    target = customers[42]
    first = await Customer.objects.get(id=target.id)
    second = await Customer.objects.get(id=target.id)
    first.tier = "enterprise"
    await first.save()
    step(f"instance A of #{target.id} saved", None, f"now at version {first.version}")
    second.credit = Decimal("1.00")
    try:
        await second.save()
    except VersionConflict as exc:
        step(f"instance B (still at version {exc.expected}) saved", None,
             f"VersionConflict: {exc}")
        note(f"model={exc.model!r} id={exc.id!r} expected={exc.expected} actual={exc.actual}")
        await second.reload()
        second.credit = Decimal("1.00")
        await second.save()
        note(f"B reloaded and saved again: version {second.version}, tier={second.tier}, "
             f"credit={second.credit}")
    else:
        raise AssertionError("expected a VersionConflict")

    duplicate = Customer(email=customers[7].email, name="Copy Cat", country="DE",
                         signed_up=dt.datetime(2024, 6, 1, tzinfo=UTC))
    try:
        await duplicate.save()
    except UniqueViolation as exc:
        step(f"new customer with the email of #{customers[7].id}", None,
             f"UniqueViolation: {exc}")
        note(f"model={exc.model!r} index={exc.index!r} id={exc.id!r} other_id={exc.other_id!r}")
    else:
        raise AssertionError("expected a UniqueViolation")

    bad = Customer(email="not-an-email", name="X", country="Germany", tier="gold",
                   signed_up="yesterday", credit=Decimal("-5"), tags=["ok", 7])
    try:
        await bad.save()
    except ValidationError as exc:
        step("one save() with seven bad values", None,
             f"ValidationError on {len(exc.errors)} fields (nothing was written)")
        for name, messages in exc.errors.items():
            for message in messages:
                note(f"{name:<10} {message}")
    else:
        raise AssertionError("expected a ValidationError")


    # -- events, atomic operations, a transaction ------------------------------------------
    section("9. Change events, atomic operations and a transaction")
    feed = Customer.objects.changes()  # every write appends to the collection's stream
    await feed.read()  # (fixes the feed's start: now)
    payer, payee = await Customer.objects.filter(credit__gte=Decimal("100")).order_by(
        "id").limit(2).all()
    credit, ms = await timed(payer.inc("credit", Decimal("5.00")))
    step(f'#{payer.id}.inc("credit", 5.00)', ms,
         f"now {money(credit)}: computed from the stored value, never lost")

    async def move(tx: Any) -> None:
        source = await tx.get(Customer, payer.id)
        target = await tx.get(Customer, payee.id)
        source.credit -= Decimal("10.00")
        target.credit += Decimal("10.00")
        tx.save(source)
        tx.save(target)

    _, ms = await timed(connection.run_transaction(move))
    step(f"run_transaction: move 10.00 from #{payer.id} to #{payee.id}", ms,
         "both written by one atomic script, or neither")
    events, ms = await timed(feed.read())
    step("feed.read()", ms, f"{len(events)} events since the feed started")
    for event in events:
        note(f"{event.op:<7} #{event.id} v{event.version}  changed: "
             f"{', '.join(event.changed or ()) or '-'}")


# =============================================================================================
# The sync twins
# =============================================================================================


def sync_tour() -> None:
    section("10. The same API, blocking (sync twins)")
    customer = Customer(email="sync.user@example.com", name="Sync User", country="FR",
                        tier="pro", signed_up=dt.datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
                        credit=Decimal("250.00"), tags=["beta"])
    _, ms = timed_sync(customer.save_sync)
    step("customer.save_sync()", ms, f"#{customer.id} version {customer.version}")
    items = [{"sku": "monitor", "qty": 2, "price": "229.00"}]
    for days, status in ((1, "paid"), (3, "shipped"), (6, "pending")):
        Order(customer_id=customer.id, total=Decimal("458.00"), status=status,
              placed_at=customer.signed_up + dt.timedelta(days=days), items=items).save_sync()
    qs = Order.objects.filter(customer_id=customer.id)
    rows, ms = timed_sync(qs.all_sync)
    step(f"filter(customer_id={customer.id!r}).all_sync()", ms, f"{len(rows)} orders")
    start = time.perf_counter()
    lines = [f"{o.placed_at:%Y-%m-%d} {o.status:<8} {money(o.total)}"
             for o in Order.objects.filter(customer_id=customer.id).order_by("-placed_at")]
    step("for order in ...order_by(\"-placed_at\"):", (time.perf_counter() - start) * 1000)
    for line in lines:
        note(line)
    pending = Order.objects.filter(customer_id=customer.id, status="pending")
    n, ms = timed_sync(lambda: pending.update_sync(status="paid"))
    step('filter(..., status="pending").update_sync(status="paid")', ms, f"{n} updated")
    n, ms = timed_sync(Customer.objects.filter(country="FR", tier="pro").count_sync)
    step('filter(country="FR", tier="pro").count_sync()', ms, f"{n}")
    customer.credit = Decimal("300.00")
    customer.save_sync()
    fresh = Customer.objects.get_sync(email="sync.user@example.com")
    step("save_sync() again, then get_sync(email=...)", None,
         f"version {fresh.version}, credit {money(fresh.credit)}")
    n = Order.objects.filter(customer_id=customer.id).delete_sync()
    gone = customer.delete_sync()
    step("delete_sync() of the orders, then of the customer", None,
         f"{n} orders deleted; customer deleted={gone}")


# =============================================================================================
# A new release of a model, on the data the old one wrote
# =============================================================================================


def schema_tour() -> None:
    section("11. A new index on existing data, built online; verify()")

    class CustomerV2(DemoDocument):  # the next release: referrer indexed, a new field
        email = StringField(required=True, unique=True, max_length=120,
                            regex=r"[^@\s]+@[^@\s]+\.[a-z]{2,}")
        name = StringField(required=True, min_length=2, max_length=80, indexed=True)
        country = StringField(required=True, min_length=2, max_length=2, indexed=True)
        tier = StringField(choices=("free", "pro", "enterprise"), default="free", indexed=True)
        signed_up = DateTimeField(required=True, indexed=True)
        credit = DecimalField(min_value=0, indexed=True)
        tags = ArrayField(StringField(max_length=20), indexed=True, default=list)
        referrer = StringField(indexed=True)
        segment = StringField(default="retail", indexed=True)

        class Meta:
            collection = "customers"
            indexes = [("country", "tier")]

    partners = CustomerV2.objects.filter(referrer="partner")
    plan, ms = timed_sync(partners.explain_sync)
    step('filter(referrer="partner").explain_sync()', ms,
         f"{plan.strategy}: index {plan.details['indexes building']}")
    n, ms = timed_sync(partners.count_sync)
    step('filter(referrer="partner").count_sync()', ms, f"{n} (a scan, right meanwhile)")
    n, ms = timed_sync(CustomerV2.objects.filter(segment="retail").count_sync)
    step('filter(segment="retail").count_sync()', ms, f"{n}: older documents read as the "
         "default")
    report, ms = timed_sync(CustomerV2.objects.reindex_sync)
    step("CustomerV2.objects.reindex_sync()", ms,
         f"{', '.join(report.indexes)} ready: {report.documents} documents "
         f"({report.rate:,.0f}/s), {report.backfilled} given segment='retail'")
    plan, ms = timed_sync(partners.explain_sync)
    step('filter(referrer="partner").explain_sync()', ms,
         f"{plan.strategy} via {', '.join(plan.indexes)}")
    n, ms = timed_sync(partners.count_sync)
    step('filter(referrer="partner").count_sync()', ms, f"{n}")
    checked, ms = timed_sync(CustomerV2.objects.verify_sync)
    step("CustomerV2.objects.verify_sync()", ms,
         f"ok={checked.ok}: {checked.documents} documents, {checked.entries:,} index entries")


# =============================================================================================
# Main
# =============================================================================================


async def run_async(url: str) -> None:
    connection = create_connection("redis", url, name="demo", make_default=True)
    try:
        await async_tour(connection)
    finally:
        await connection.aclose()  # the asyncio pool belongs to this event loop


def main() -> int:
    started = time.perf_counter()
    url_variable = "QUANTUMORM_URL" if os.environ.get("QUANTUMORM_URL") else "REDIS_URL"
    url = os.environ.get(url_variable)
    server: PrivateRedis | None = None
    # Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt where the program is, so the finally
    # below stops the server. For SIGINT this replaces asyncio.run()'s own handler, which only
    # cancels the main task: on Python < 3.12 asyncio.wait_for() (used by redis-py for every
    # command it sends) can swallow that cancellation, and the demo would run on.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _raise_interrupt)
    executable = shutil.which("redis-server")
    if not url and executable is None:
        print("redis-server is not installed and QUANTUMORM_URL (or REDIS_URL) is not set.\n"
              "Run ./run-demo (it installs redis-server), or point the demo at a server:\n"
              "  QUANTUMORM_URL=redis://127.0.0.1:6379/0 .venv/bin/python examples/demo.py",
              file=sys.stderr)
        return 1
    try:
        print("QuantumORM demo: typed documents in Redis with always-correct secondary indexes")
        print("-" * WIDTH)
        if url:
            print(f"Using {url_variable} (server {_server_version(url)}); demo data lives in the "
                  f"{NAMESPACE!r} namespace only.")
        else:
            assert executable is not None
            server = PrivateRedis(executable)
            server.start()
            assert server.proc is not None
            url = server.url
            print(f"Started private redis-server {_server_version(url)} (pid {server.proc.pid}) "
                  f"on 127.0.0.1:{server.port}, no persistence, dir {server.dir}")

        asyncio.run(run_async(url))
        create_connection("redis", url, name="demo", make_default=True)
        sync_tour()
        schema_tour()

        section("Done")
        if server is None:
            print(f"The demo collections stay on the server for inspection (keys "
                  f"{{{NAMESPACE}:customers:p0}}:* and {{{NAMESPACE}:orders:p0}}:*); the next "
                  "run drops them first.")
        print(f"Total runtime {time.perf_counter() - started:.2f} s.")
        return 0
    finally:
        close_all()
        if server is not None:
            server.stop()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
