"""Operator changes: the actions that make them, and the change feed that brings them to
every worker."""
