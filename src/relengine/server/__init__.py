"""The gRPC server: the only package that imports grpc (the clients in ``relengine.client`` use it).

``convert`` maps protocol buffers to model types; ``status`` maps errors to gRPC statuses;
``servicer`` holds the thin RPCs; ``auth`` and ``metrics`` are interceptors; ``app`` builds,
runs and stops servers (one or several worker processes). Nothing is imported here, so that
``import relengine.server.convert`` stays light for clients.
"""
