"""Tools that operate on a whole collection or a whole store rather than on documents:
repartitioning (:mod:`.repartition`, on a connection the caller passes or the model's) and
the ``quantumorm`` command line (:mod:`.cli`, the entry point; one module per group of
commands: :mod:`.inspection`, :mod:`.maintain`, :mod:`.follow`, :mod:`.status`; what they
share: :mod:`.common`, :mod:`.targets`, :mod:`.stored`, :mod:`.progress`), which opens a
connection of its own."""
