"""Readable views of a schema: role x permission matrices and definition graphs."""
