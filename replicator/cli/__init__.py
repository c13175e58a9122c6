"""The ``replicator`` command line: ``main`` has the path commands, ``tools`` the table tools.

The top room: it may import every other, and none imports it.
"""
