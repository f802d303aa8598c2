"""Answers permission questions from a compiled schema and a storage Reader.

``dispatch``: answers and the Dispatcher contract (depth, deadline, caching, threads, errors).
``plan``: the schema as one closure per member, and ``Walk``, what the closures use of a check.
``check``: ``LocalChecker``, the walk of one request. ``cache``: the answer cache, its key, and
the Dispatcher that consults it. ``build``: the one place a request's pipeline is composed, and
the list of every cache on the Check path. ``lookup``, ``expand``: LookupResources and
LookupSubjects, Expand, under the same depth budget and deadline.
"""
