"""Download throughput of the S3 backend: sequential reads, ``read_many`` and bare boto3 GETs.

Runs moto's threaded S3 server on 127.0.0.1 (a free port) in this process, writes
N objects of SIZE bytes through ``S3Remote``, then reads them back three ways in
the same run: one at a time (``S3Remote.read``), over ``oplog.remotefetch.read_many``
with 8 workers, and with a bare ``ThreadPoolExecutor`` of 8 boto3 ``get_object``
calls — the ceiling for this library on this machine. Loopback has no latency,
so the gap between sequential and concurrent reads is far smaller here than
over a WAN.

    python bench/remote_read.py [N] [SIZE]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def main(argv: list[str]) -> int:
    """Print MB/s for the three ways of reading."""
    n = int(argv[0]) if argv else 50
    size = int(argv[1]) if len(argv) > 1 else 2_000_000
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ[key] = value
    import boto3
    from moto.server import ThreadedMotoServer

    from oplog.remote_s3 import S3Remote
    from oplog.remotefetch import read_many

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench-bucket")
        remote = S3Remote("bench-bucket", "b", endpoint=endpoint)
        paths = [f"main/devices/a/{i:016x}.seg" for i in range(n)]
        blob = os.urandom(size)
        for path in paths:
            remote.write_new(path, blob)

        def timed(work: Callable[[], object]) -> float:
            start = time.perf_counter()
            work()
            return time.perf_counter() - start

        def bare() -> None:
            def get(path: str) -> bytes:
                return bytes(client.get_object(Bucket="bench-bucket", Key=f"b/{path}")["Body"].read())

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(get, paths))

        mb = n * size / 1e6
        sequential = timed(lambda: [remote.read(p) for p in paths])
        many = timed(lambda: list(read_many(remote.read, paths, workers=8)))
        ceiling = timed(bare)
        print(
            f"{n} x {size} B = {mb:.0f} MB: sequential {mb / sequential:.0f} MB/s, "
            f"read_many(8) {mb / many:.0f} MB/s, bare boto3 x8 {mb / ceiling:.0f} MB/s "
            f"(read_many / bare = {ceiling / many:.2f})"
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
