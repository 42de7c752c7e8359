"""Redis as a cache in front of a primary database (``Meta.cache``).

A model whose primary store is SQLite or PostgreSQL declares ``Meta.cache = {"connection":
"cache", "ttl": 300, "mode": "aside"}``; its documents are then read from the cache first
and every write through the ORM keeps the cache from serving anything older than that
write. The pieces, one job each:

* :mod:`.settings`: the checked ``Meta.cache`` option.
* :mod:`.entries`: key names (the only place) and the values a cache key holds.
* :mod:`.dispatch`: one operation, two stores: plans tagged for the cache, the drivers'
  executors that route them, and the store object of a cached model's connection.
* :mod:`.store`: what the cache layer asks of a cache server, and which implementation
  serves each backend kind; :mod:`.redis_store`: the one for Redis (loaded lazily: it
  imports redis-py), one Lua script per step.
* :mod:`.state`: per cache server, the circuit breaker and the invalidations still owed.
* :mod:`.stats`: per model counters (``Model.objects.cache_stats()``).
* :mod:`.reads`, :mod:`.writes`, :mod:`.queries`: the cached reads (leases, stampede
  protection, fills), the writes (begin / commit / finish), query-result caching.
* :mod:`.backend`: the backend a cached model's operations see, composed of the above.
* :mod:`.routing`: which connection a cached model runs on.

This package's ``__init__`` imports nothing: :mod:`quantumorm.options` imports
:mod:`.settings`, and the other modules import the options.
"""
