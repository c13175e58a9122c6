"""A replication path under the KCL MultiLangDaemon.

The path's configuration and taskName (``config``), the start-up checks of its tables (``checks``), all of a
path's start-up checks in one place (``preflight``), ``discover``, which writes one path per chosen table, the
paths one daemon runs (``pathset``), the launcher that execs the Java daemon (``launcher``), the amazon-kclpy
record processor it spawns per shard (``processor``, forked from the daemon's preloaded ``zygote`` through the
per-shard shim ``shard``) with its CloudWatch metrics (``metrics``), a stopped path's reason (``stopped``), and
the lease table's view of its progress (``status``). It may import ``changes`` and the top-level modules,
nothing above.
"""
