"""Queries: the lookup vocabulary, the IR, Q objects and field expressions, the QuerySet."""
