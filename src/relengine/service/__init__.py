"""The in-process API: ``Engine`` (``engine``) over one TupleStore, with the revision each
read runs at (``revisions``), the compiled schema of each revision (``schemas``) and the
store's housekeeping (``housekeeping``). No gRPC here."""

from .bulk import Question
from .engine import Engine

__all__ = ["Engine", "Question"]
