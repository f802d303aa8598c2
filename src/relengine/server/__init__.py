"""The gRPC server: relengine's services over ``relengine.wire``, which ``relengine.client`` speaks too.

``status`` gives a failed RPC its status (``wire.status`` encodes it); ``servicer`` holds the
thin RPCs (``wire.convert`` maps their messages); ``auth`` checks the preshared key;
``pipeline`` wraps every method once (auth, errors, ``metrics``, logging); ``app`` builds,
runs and stops servers (one or several worker processes). Nothing is imported here.
"""
