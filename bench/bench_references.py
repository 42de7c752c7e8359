"""What references cost on Redis: round trips and time of application-level joins and of
delete rules, against the N+1 reads they replace.

Models: ``Author`` (``--authors``), ``Post`` (``--posts``; ``author`` CASCADE with
related name ``posts``, ``editor`` NULLIFY), ``Comment`` (``post`` CASCADE, one per post).

* **round trips**: calls of redis-py's ``Connection.send_packed_command`` during the call
  (see bench_aggregate.py);
* **median ms**: of ``--repeat`` runs (the delete rows: one run each, on fresh data).

Usage: bench/bench_references.py [--posts 1000] [--authors 50] [--repeat 20]. Starts a
private redis-server on a free 127.0.0.1 port (stopped at exit) unless $REDIS_URL is set;
deletes only its own keys.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from bench_aggregate import measure  # (this folder)
from bench_redis import redis_server

from quantumorm import (
    CASCADE,
    NULLIFY,
    Document,
    IntField,
    ReferenceField,
    StringField,
    close_all,
    create_connection,
)


def _meta(collection: str) -> type:
    return type("Meta", (), {"backend": "redis", "namespace": "qbench-refs",
                             "collection": collection})


class Author(Document):
    name = StringField()
    Meta = _meta("authors")


class Post(Document):
    title = StringField()
    n = IntField(indexed=True)
    author = ReferenceField(Author, related_name="posts", on_delete=CASCADE)
    editor = ReferenceField(Author, related_name="edited", on_delete=NULLIFY)
    Meta = _meta("posts")


class Comment(Document):
    text = StringField()
    post = ReferenceField(Post, on_delete=CASCADE)
    Meta = _meta("comments")


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _fill(authors: int, posts: int) -> list[Author]:
    for model in (Comment, Post, Author):
        model.objects.delete_sync()
    people = Author.objects.bulk_create_sync([Author(id=f"a{i}", name=f"author {i}")
                                              for i in range(authors)])
    Post.objects.bulk_create_sync(
        [Post(id=f"p{i}", title=f"t{i}", n=i, author=people[i % authors],
              editor=people[(i + 1) % authors]) for i in range(posts)], batch_size=1000)
    Comment.objects.bulk_create_sync([Comment(id=f"c{i}", post=f"p{i}", text="x")
                                      for i in range(posts)], batch_size=1000)
    return people


def _n_plus_one(page: int) -> Callable[[], Any]:
    def call() -> None:
        for post in Post.objects.order_by("n")[:page].all_sync():
            assert post.author is not None and post.editor is not None
            post.author.fetch_sync()
            post.editor.fetch_sync()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--authors", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with redis_server("qbench-refs-") as url:
        raw = redis.Redis.from_url(url)
        create_connection(backend="redis", url=url, name="bench", make_default=True)
        try:
            _fill(args.authors, args.posts)
            print(f"redis-server {raw.info('server')['redis_version']} | posts={args.posts} "
                  f"authors={args.authors} | median of {args.repeat}")
            print(f"{'call':<62} | {'round trips':>11} | {'median ms':>9}")
            page = min(100, args.posts)
            by_n = Post.objects.order_by("n")
            cases: list[tuple[str, Callable[[], Any]]] = [
                (f"{page} posts: all()", by_n[:page].all_sync),
                (f"{page} posts: select_related('author', 'editor').all()",
                 by_n[:page].select_related("author", "editor").all_sync),
                (f"{page} posts, then fetch_sync() each author and editor",
                 _n_plus_one(page)),
                (f"{args.posts} posts: select_related('author', 'editor').all()",
                 by_n.select_related("author", "editor").all_sync),
                (f"{args.authors} authors: prefetch_related('posts').all()",
                 Author.objects.prefetch_related("posts").all_sync),
            ]
            for name, call in cases:
                trips, _ = measure(raw, call)
                print(f"{name:<62} | {trips:>11} | {_median_ms(call, args.repeat):>9.2f}")
            for name, model, id in (
                    ("delete an author: CASCADE posts+comments, NULLIFY editor", Author,
                     "a0"),
                    ("delete a comment (nothing refers to comments: no rule)", Comment,
                     "c1")):
                _fill(args.authors, args.posts)
                doc: Any = model.objects.get_sync(id=id)
                start = time.perf_counter()
                trips, _ = measure(raw, doc.delete_sync)
                elapsed = (time.perf_counter() - start) * 1e3
                print(f"{name:<62} | {trips:>11} | {elapsed:>9.2f}")
            for model in (Comment, Post, Author):
                model.objects.delete_sync()
        finally:
            close_all()


if __name__ == "__main__":
    main()
