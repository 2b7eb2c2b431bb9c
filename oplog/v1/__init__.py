"""Generated protobuf and gRPC code for oplog.v1 (do not edit; regenerate from proto/)."""
