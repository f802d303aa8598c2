"""The soak: ``relengine serve`` at about 80% of its measured capacity for a long time (10
minutes for a change, an hour for a release), with 1% writes and periodic abusive clients,
reporting Check p50/p99, throughput, errors by gRPC code and the server's RSS per minute, and
passing when, after a minute of warm-up, p99 (first third of the minutes against the last,
by median) and RSS have not grown.

1. A copy of a cached dataset (``bench.dataset``) is served by ``relengine serve`` on 127.0.0.1.
2. Every Check of the load (account-admin walks and Zipf users, 1,000) and the huge lookups
   are answered once and compared with the generator's answers; nothing runs until they match.
3. Capacity: the client processes the load will use send its mix back to back (``load``),
   with the abusive clients running beside them as they will during the load.
4. The load: an open loop at ``--load`` (0.8) of that rate, latency from each request's
   intended send time, every answer compared with the expected one, 1% writes through the
   client; the abusive clients (``abuse``) run a round every ``--abuse-every`` seconds; the
   server's RSS (``rss``) is sampled every second.
5. After it: the writes read back, the answers checked again, health, then SIGTERM.
6. ``report``: windows, verdict, ``bench/results/<timestamp>/soak.{json,md,png}``.
"""

from .run import main

__all__ = ["main"]
