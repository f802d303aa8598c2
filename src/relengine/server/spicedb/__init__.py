"""SpiceDB's ``authzed.api.v1`` services, served beside relengine's own on the same port,
engine, cache and limits (``add_servicers``). Messages, tokens, field rules and error details
are ``wire.spicedb``'s; the servicer bases are the official ``authzed`` package's."""

from .common import SpiceDBOptions
from .services import SERVICE_NAMES, STATUSES, add_servicers

__all__ = ["SERVICE_NAMES", "STATUSES", "SpiceDBOptions", "add_servicers"]
