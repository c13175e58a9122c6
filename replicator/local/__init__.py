"""The local world: a local server standing in for AWS, and what runs on it.

``server`` runs the local database;
``sandbox`` sets up a replication path on it; ``workload`` writes and probes; ``demo`` is ``make demo``.
Used by the demo, the integration tests and the benchmarks; it may import every room below ``cli``.
"""
