"""Relationships and schema text at revisions: the store Protocols and their implementations."""
