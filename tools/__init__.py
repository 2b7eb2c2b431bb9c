"""The ``oplog`` command line and the auto-sync daemon (installed as ``oplog.tools``)."""
