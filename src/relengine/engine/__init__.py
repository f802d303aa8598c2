"""Answers permission questions from a compiled schema and a storage Reader."""
