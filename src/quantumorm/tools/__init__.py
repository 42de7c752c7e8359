"""Tools that operate on a whole collection rather than on documents: repartitioning
(:mod:`.repartition`, on a connection the caller passes or the model's) and the command line
(``python -m quantumorm``, :mod:`.cli`, which opens a connection of its own)."""
