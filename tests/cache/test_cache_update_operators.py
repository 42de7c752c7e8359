"""Update operators through the cache in front of a SQLite primary: each path (update,
update_one, upsert, modify) invalidates what it wrote, so the next read sees it."""

from __future__ import annotations

from typing import Any

from cache_models import Account
from test_cache_basics import slot


def test_operators_invalidate_the_cached_documents(cached: dict[str, Any]) -> None:
    a = Account(email="a@x", name="A").save_sync()
    b = Account(email="b@x", name="B").save_sync()

    def warm() -> None:
        Account.objects.get_many_sync([a.id, b.id])
        assert slot(cached, Account, a.id).startswith(b"E")
        assert slot(cached, Account, b.id).startswith(b"E")

    warm()
    assert Account.objects.filter(name__in=["A", "B"]).update_sync(inc__balance=5) == 2
    assert [d.balance for d in Account.objects.get_many_sync([a.id, b.id]) if d] == [5, 5]
    warm()
    assert Account.objects.filter(name="B").update_one_sync(dec__balance=2) == 1
    assert Account.objects.get_sync(id=b.id).balance == 3
    warm()
    after = Account.objects.filter(id=a.id).modify_sync(new=True, inc__balance=1)
    assert after is not None and after.balance == 6
    assert Account.objects.get_sync(id=a.id).balance == 6
    assert Account.objects.filter(email="c@x", name="C").update_sync(
        upsert=True, inc__balance=4) == 1
    assert Account.objects.cached(False).get_sync(email="c@x").balance == 4
    assert Account.objects.get_sync(email="c@x").balance == 4
