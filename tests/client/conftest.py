from ..server.harness import client, engine, loaded, running  # noqa: F401  (fixtures)
