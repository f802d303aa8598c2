"""What the gRPC server and the clients share: the protocol as both ends speak it.

``_proto`` holds the generated stubs (``scripts/gen_proto.py``); ``convert`` maps messages to
model values and back; ``status`` maps errors to ``google.rpc.Status`` (code, message,
ErrorInfo) and back; ``metadata`` names the call metadata. Serving (``relengine.server``) and
calling (``relengine.client``) stay out: this package imports neither, nor the service.
Nothing is imported here, so that a client loads only the modules it uses.
"""
