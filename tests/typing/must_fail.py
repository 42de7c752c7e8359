"""Misuse of the public API that ``mypy --strict`` must reject (tests/unit/test_typing.py).

Every line whose comment starts with ``E:`` must have an error, and no other line may have
one. Never run.
"""
# ruff: noqa: B015, B018, F841  (bare expressions and unused names are the point here)

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from quantumorm import (
    ArrayField,
    Avg,
    DateField,
    DateTimeField,
    DecimalField,
    Document,
    EnumField,
    IntField,
    StringField,
    create_connection,
)


class User(Document):
    name: StringField = StringField(required=True)
    age: IntField = IntField(min_value=0)
    tags: ArrayField[str] = ArrayField(StringField())
    joined: DateTimeField = DateTimeField()


class Order(Document):
    total: DecimalField = DecimalField()


class Size(enum.Enum):
    S = "s"


class Shirt(Document):
    made: DateField = DateField()
    size: EnumField[Size] = EnumField(Size)


conn = create_connection(url="redis://localhost:6379/0")
user = User(name="Ada")

# -- fields --------------------------------------------------------------------------------
user.age = "thirty"  # E: a str in an IntField
user.name = 3  # E: an int in a StringField
user.tags = "x"  # E: a str is not a list[str]
user.tags = [1, 2]  # E: list[int] in an ArrayField of strings
user.joined = 1700000000  # E: a timestamp is not a datetime
user.id = 1.5  # E: an id is a string or an int
age: int = user.age  # E: may be None
name: str | None = user.age  # E: an int is not a str
User.id  # E: no class attribute id (query with id=)
Order(total=1.5)  # E: floats are refused by DecimalField
user.objects  # E: objects is reached through the class
Shirt(made=1700000000)  # E: a timestamp is not a date
shirt_size: Size = Shirt().size  # E: may be None
Shirt().size = 3  # E: an int is not a Size

# -- constructor ---------------------------------------------------------------------------
User(nme="x")  # E: no such field
User(age="x")  # E: wrong type
User("u1", "Ada")  # E: only the id may be positional
Order(name="Ada")  # E: a User field on an Order

# -- expressions ---------------------------------------------------------------------------
User.age > "x"  # E: compares an int field with a str
User.age >= dt.datetime(2024, 1, 1)  # E: compares an int field with a datetime
User.name.in_([1, 2])  # E: ints for a string field
User.name.icontains(3)  # E: an int as a case-insensitive substring
User.name.regex(None)  # E: None as a pattern
User.objects.filter(User.age)  # E: a field is not a condition
User.objects.filter(True)  # E: a bool is not a condition

# -- operations ----------------------------------------------------------------------------


async def misuse() -> None:
    await User.objects.get_sync()  # E: the sync twin returns a User, not an awaitable
    found: User = User.objects.first_sync()  # E: may be None
    users: list[User] = await Order.objects.all()  # E: Orders are not Users
    again: User = await Order.objects.get()  # E: an Order is not a User
    count: str = await User.objects.count()  # E: count is an int
    n: int = User.objects.count()  # E: the async one is a coroutine
    saved: Order = await user.save()  # E: save returns the User itself
    user.save_sync(ttl="1h")  # E: ttl is in seconds
    user.delete_sync(True)  # E: soft is keyword-only
    User.objects.filter(age=3).limit("10")  # E: limit takes an int
    await user.touch()  # E: touch needs a ttl
    total: Decimal = await Order(total=1).reload()  # E: reload returns the Order
    conn.run_transaction_sync(lambda tx: tx.get(User, 1.5))  # E: ids are str or int
    first: User = User.objects[0]  # E: one document is read by at() / at_sync(), not qs[0]
    last: User = await User.objects.last()  # E: last() may be None
    pair: User = await User.objects.get_or_create(name="x")  # E: a (document, created) pair
    User.objects.iterator(chunk_size="big")  # E: chunk_size is an int
    found_one: User = User.objects.modify_sync(new=True, inc__age=1)  # E: may be None
    User.objects.update_one_sync(upsert="yes", inc__age=1)  # E: upsert is a bool
    User.objects.aggregate_sync(n="age")  # E: aggregate takes Count, Sum, Avg, Min or Max
    mean: float = User.objects.aggregate_sync(m=Avg("age"))["m"]  # E: may be None or other
Shirt.drop_table_sync(True)  # E: confirm is keyword-only
wrong_shirt: Order = Shirt.get_sync(id="s1")  # E: get returns a Shirt
