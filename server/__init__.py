"""The gRPC service ``oplog.v1.OpLog`` (installed as ``oplog.server``)."""
