"""The gRPC server: relengine's services over ``relengine.wire``, which ``relengine.client`` speaks too.

``status`` maps errors to gRPC statuses; ``servicer`` holds the thin RPCs (``relengine.wire``
converts their messages); ``auth`` and ``metrics`` are interceptors; ``app`` builds, runs and
stops servers (one or several worker processes). Nothing is imported here.
"""
