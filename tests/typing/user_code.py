"""User-style code over the public API, checked by ``mypy --strict`` (tests/unit/test_typing.py).

Never run: it only has to type-check, with ``assert_type`` pinning what every call returns.
"""

from __future__ import annotations

import datetime as dt
import enum
import sys
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from quantumorm import (
    ArrayField,
    Avg,
    BooleanField,
    ChangeEvent,
    Connection,
    ConsumerGroup,
    Count,
    DateField,
    DateTimeField,
    DecimalField,
    DictField,
    Document,
    EmailField,
    EnumField,
    FloatField,
    IntField,
    JSONField,
    ListField,
    Max,
    Min,
    Page,
    Q,
    QuerySet,
    StringField,
    Sum,
    SyncTransaction,
    Transaction,
    URLField,
    UUIDField,
    create_connection,
    get_connection,
)
from quantumorm.events import ChangeFeed, Consumer, Subscription
from quantumorm.query.aggregates import Value as AggregateValue
from quantumorm.query.expressions import FieldRef

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


class User(Document):
    email: StringField = StringField(required=True, unique=True)
    name: StringField = StringField(required=True, max_length=80, indexed=True)
    age: IntField = IntField(min_value=0, indexed=True)
    score: FloatField = FloatField()
    balance: DecimalField = DecimalField(default=Decimal("0"), indexed=True)
    active: BooleanField = BooleanField(default=True)
    token: UUIDField = UUIDField()
    joined: DateTimeField = DateTimeField(indexed=True)
    tags: ArrayField[str] = ArrayField(StringField(), default=list, indexed=True)
    scores: ListField[int] = ListField(IntField())
    profile: DictField = DictField()
    extra: JSONField = JSONField()

    class Meta:
        collection = "users"


class Order(Document):
    owner: StringField = StringField(indexed=True)
    total: DecimalField = DecimalField(indexed=True)

    class Meta:
        collection = "orders"
        partitions = 1


# -- connections ---------------------------------------------------------------------------

conn = create_connection(backend="redis", url="redis://localhost:6379/0", make_default=True)
assert_type(conn, Connection)
assert_type(get_connection(), Connection)
assert_type(create_connection(backend="sqlite", url="sqlite:///:memory:", name="lite"),
            Connection)
assert_type(conn.name, str)

# -- documents: construction, fields, expressions ------------------------------------------

user = User(email="a@example.com", name="Ada", age=36, tags=["x"], balance=Decimal("1.5"))
assert_type(user, User)
assert_type(User("u1", name="Ada"), User)
assert_type(User(id=7, joined="2024-01-31T12:00:00Z", token=str(uuid.uuid4())), User)
assert_type(user.id, str | None)
assert_type(user.name, str | None)
assert_type(user.age, int | None)
assert_type(user.score, float | None)
assert_type(user.balance, Decimal | None)
assert_type(user.active, bool | None)
assert_type(user.token, uuid.UUID | None)
assert_type(user.joined, dt.datetime | None)
assert_type(user.tags, list[str] | None)
assert_type(user.scores, list[int] | None)
assert_type(user.profile, dict[str, Any] | None)
assert_type(user.version, int)
assert_type(user.is_saved, bool)
assert_type(user.to_dict(), dict[str, Any])
assert_type(user.changed_fields(), list[str])
user.age = 37
user.age = None
user.score = 3  # an int is a float to type checkers too
user.balance = 10
user.balance = "10.25"
user.joined = dt.datetime.now(dt.timezone.utc)
user.joined = "2024-01-31"
user.tags = ["a", "b"]
user.id = "u2"
user.extra = {"anything": [1, 2]}

assert_type(User.age, FieldRef[int])
assert_type(User.age > 30, Q)
assert_type(User.age == 30, Q)
assert_type(User.age != None, Q)  # noqa: E711 - builds an isnull condition
assert_type(User.name.in_(["Ada", "Bob"]), Q)
assert_type(User.name.startswith("A"), Q)
assert_type(User.name.iexact("ada"), Q)
assert_type(User.name.icontains("DA"), Q)
assert_type(User.name.istartswith("a") | User.name.iendswith("A"), Q)
assert_type(User.name.regex(r"^A\w+$") & User.name.iregex("^a"), Q)
assert_type(User.tags.contains("x"), Q)
assert_type(User.joined >= dt.datetime(2024, 1, 1), Q)
assert_type(User.joined >= "2024-01-01", Q)
assert_type(User.balance > 100, Q)
assert_type((User.age > 30) & ~Q(name="Bob") | Q(active=True), Q)

# -- queries, blocking ---------------------------------------------------------------------

qs = User.objects.filter(User.age >= 18, name__startswith="A").exclude(active=False)
assert_type(qs, QuerySet[User])
assert_type(qs.order_by("-age", User.name).limit(10).offset(5)[0:3], QuerySet[User])
assert_type(User.objects.only("name").using("default"), QuerySet[User])
assert_type(qs.all_sync(), list[User])
assert_type(qs.first_sync(), User | None)
assert_type(qs.get_sync(User.email == "a@example.com"), User)
assert_type(User.objects.get_sync(id="u1"), User)
assert_type(qs.count_sync(), int)
assert_type(qs.exists_sync(), bool)
assert_type(qs.update_sync(active=False), int)
assert_type(qs.update_sync(inc__age=1, unset__email=True, upsert=False), int)
assert_type(qs.update_one_sync(inc__age=1, upsert=True), int)
assert_type(qs.modify_sync(new=True, inc__age=1), User | None)
assert_type(qs.delete_sync(), int)
assert_type(User.objects.get_many_sync(["u1", 2]), list[User | None])
assert_type(User.objects.create_sync(name="Cy", age=3), User)
assert_type(User.objects.bulk_create_sync([User(name="D")]), list[User])
assert_type(qs.values("name").all_sync(), list[Any])
page = qs.paginate_sync(page=2, per_page=20)
assert_type(page, Page[User])
assert_type(page.items, list[User])
assert_type(page.next_cursor, str | None)
assert_type(qs.paginate_sync(per_page=20, after=page.next_cursor).has_next, bool)
assert_type(qs.cursor_for(user), str)
for each in qs:
    assert_type(each, User)

# the familiar shortcuts
assert_type(User.objects(age__gt=3), QuerySet[User])
assert_type(User.objects(Q(name="Ada")).none(), QuerySet[User])
assert_type(qs | User.objects.filter(active=True), QuerySet[User])
assert_type(qs & User.objects.filter(active=True), QuerySet[User])
assert_type(qs.reverse(), QuerySet[User])
assert_type(qs.last_sync(), User | None)
assert_type(qs.at_sync(-1), User)
assert_type(User.objects.in_bulk_sync(["u1", 2]), dict[str, User])
assert_type(User.objects.get_or_create_sync({"age": 3}, email="a@x"), tuple[User, bool])
assert_type(User.objects.update_or_create_sync({"age": 4}, email="a@x"), tuple[User, bool])
for chunked in qs.iterator(chunk_size=100):
    assert_type(chunked, User)
assert_type(user.update_sync(age=4), User)
assert_type(Q(Q(age=1), name="x") == Q(age=1), bool)

assert_type(user.save_sync(), User)
assert_type(user.save_sync(ttl=60), User)
assert_type(user.reload_sync(), User)
assert_type(user.delete_sync(), bool)
assert_type(user.touch_sync(30), bool)
assert_type(user.persist_sync(), bool)
assert_type(user.ttl_sync(), float | None)
assert_type(user.inc_sync("age"), int | float | Decimal)
assert_type(user.push_sync("tags", "y", unique=True), list[Any])
assert_type(user.set_if_absent_sync("name", "Ada"), bool)
assert_type(user.update_with_retry_sync(lambda u: None), User)
assert_type(Order(owner="u1", total=Decimal("9.99")).save_sync(), Order)
assert_type(User.save_sync(user, ttl=None), User)
assert_type(User.delete_sync(user), bool)


# -- asyncio -------------------------------------------------------------------------------

async def async_code() -> None:
    assert_type(await user.save(), User)
    assert_type(await user.reload(), User)
    assert_type(await Order.save(Order()), Order)
    assert_type(await user.delete(soft=True, ttl=60), bool)
    assert_type(await user.dec("age", 2), int | float | Decimal)
    assert_type(await user.pull("tags", "x"), list[Any])
    assert_type(await qs.all(), list[User])
    assert_type(await qs, list[User])
    assert_type(await qs.first(), User | None)
    assert_type(await qs.get(), User)
    assert_type(await User.objects.get(id="u1"), User)
    assert_type(await qs.count(), int)
    assert_type(await qs.exists(), bool)
    assert_type(await qs.update(age=40), int)
    assert_type(await qs.update_one(dec__age=1), int)
    assert_type(await qs.modify(inc__age=1), User | None)
    assert_type(await qs.delete(), int)
    assert_type(await Order.objects.filter(total__gte=100).all(), list[Order])
    assert_type(await qs.paginate(per_page=5, after=None), Page[User])
    async for found in qs:
        assert_type(found, User)
    assert_type(await qs.last(), User | None)
    assert_type(await qs.at(0), User)
    assert_type(await User.objects.in_bulk(["u1"]), dict[str, User])
    assert_type(await User.objects.get_or_create(email="a@x"), tuple[User, bool])
    assert_type(await User.objects.update_or_create({"age": 1}, email="a@x"),
                tuple[User, bool])
    assert_type(await user.update(name="Ada"), User)
    async for chunk_doc in qs.iterator(chunk_size=10):
        assert_type(chunk_doc, User)
    await conn.aclose()


# -- transactions --------------------------------------------------------------------------

with conn.transaction_sync() as stx:
    assert_type(stx, SyncTransaction)
    got = stx.get(User, "u1")
    assert_type(got, User | None)
    if got is not None:
        got.age = 1
        stx.save(got)
    stx.delete(user)


def transfer(tx: SyncTransaction) -> int:
    found = tx.get(User, "u1")
    return 0 if found is None or found.age is None else found.age


assert_type(conn.run_transaction_sync(transfer), int)


async def async_transactions() -> None:
    async with conn.transaction() as tx:
        assert_type(tx, Transaction)
        assert_type(await tx.get(Order, 1), Order | None)
        tx.save(user, ttl=10)

    async def work(tx: Transaction) -> str:
        return "done"

    assert_type(await conn.run_transaction(work, attempts=5), str)


# -- change events -------------------------------------------------------------------------

feed = User.objects.changes(since="0", wait=1.0)
assert_type(feed, ChangeFeed[User])
assert_type(feed.read_sync(), list[ChangeEvent[User]])
for event in feed:
    assert_type(event, ChangeEvent[User])
    assert_type(event.document, User | None)
    assert_type(event.op, str)
    assert_type(event.time, dt.datetime | None)
assert_type(feed.position, str | None)

group = User.objects.consumer_group("mailer", start="0")
assert_type(group, ConsumerGroup[User])
assert_type(group.pending_sync(), int)
worker = group.consumer("w1", batch=10)
assert_type(worker, Consumer[User])
events = worker.read_sync(wait=0.5)
assert_type(events, list[ChangeEvent[User]])
assert_type(worker.ack_sync(*events), int)
assert_type(worker.claim_sync(60.0), list[ChangeEvent[User]])

with User.objects.subscribe(wait=1.0) as subscription:
    assert_type(subscription, Subscription[User])
    for note in subscription:
        assert_type(note, ChangeEvent[User])


async def async_events() -> None:
    async for event in User.objects.changes():
        assert_type(event, ChangeEvent[User])
    assert_type(await worker.read(), list[ChangeEvent[User]])
    assert_type(await group.pending(), int)
    async with User.objects.subscribe() as sub:
        async for note in sub:
            assert_type(note, ChangeEvent[User])


# -- aggregation -------------------------------------------------------------------------------

totals = User.objects.filter(age__gte=18).aggregate_sync(
    n=Count(), total=Sum("age"), mean=Avg("age"), lo=Min("name"), hi=Max("age"))
assert_type(totals, dict[str, AggregateValue])
assert_type(User.objects.distinct_sync("name"), list[AggregateValue])
assert_type(User.objects.item_frequencies_sync("name"),
            dict[AggregateValue, int] | dict[AggregateValue, float])
assert_type(User.objects.values_list("name", flat=True).all_sync(), list[Any])


async def async_aggregates() -> None:
    assert_type(await User.objects.aggregate(n=Count("age")), dict[str, AggregateValue])
    assert_type(await User.objects.distinct("age"), list[AggregateValue])
class Status(enum.Enum):
    OPEN = "open"
    SHUT = "shut"


class Ticket(Document):
    due: DateField = DateField(indexed=True)
    status: EnumField[Status] = EnumField(Status)
    contact: EmailField = EmailField()
    link: URLField = URLField()
    anything: ArrayField[Any] = ListField()


ticket = Ticket(due=dt.date(2024, 1, 31), status=Status.OPEN, contact="a@b", link="https://x")
assert_type(ticket.due, dt.date | None)
assert_type(ticket.status, Status | None)
assert_type(ticket.contact, str | None)
assert_type(ticket.link, str | None)
assert_type(ticket.anything, list[Any] | None)
assert_type(Ticket.due, FieldRef[dt.date | str])
assert_type(Ticket.status, FieldRef[Status])
assert_type(Ticket.objects.filter(Ticket.due >= "2024-01-01", Ticket.status == Status.SHUT),
            QuerySet[Ticket])
assert_type(Ticket.get_sync(id="t1"), Ticket)
assert_type(ticket.refresh_sync(), Ticket)
assert_type(Ticket.drop_table_sync(confirm=True), int)
assert_type(Ticket.objects.drop_collection_sync(confirm=True), int)
assert_type(Ticket.objects.order_by("due", "DESC"), QuerySet[Ticket])
with create_connection(url="redis://localhost:6379/0") as ctx_conn:
    assert_type(ctx_conn, Connection)


async def upstream_idioms() -> None:
    assert_type(await Ticket.get(id="t1"), Ticket)
    assert_type(await ticket.refresh(), Ticket)
    assert_type(await Ticket.create_table(), None)
    assert_type(await Ticket.drop_table(confirm=True), int)
    async with create_connection(url="redis://localhost:6379/0") as conn_async:
        assert_type(conn_async, Connection)


class Invoice(Document):
    number: IntField = IntField(primary_key=True)


invoice = Invoice(number=5)
assert_type(invoice.number, int | None)
assert_type(Invoice.objects.filter(Invoice.number >= 10, number__lt=100), QuerySet[Invoice])


# -- pydantic interop ------------------------------------------------------------------------

UserSchema = User.pydantic_model(exclude=["id"], name="UserIn")
assert_type(UserSchema, type[BaseModel])
assert_type(User.from_pydantic(UserSchema(name="Ada", email="a@example.com")), User)
assert_type(User.from_pydantic({"name": "Ada"}), User)
assert_type(user.to_dict(json=True), dict[str, Any])
