"""SpiceDB's ``authzed.api.v1`` on the wire: its messages <-> relengine's model, its ZedTokens,
its field rules and its error details. The messages and servicer bases are the official
``authzed`` package's; nothing here serves or calls (``server.spicedb`` serves them)."""
