"""A deepdist client for tests/cluster/test_netns.py, run inside a network namespace.

    python netns_client.py ADDRESS_FILE TIMEOUT

ADDRESS_FILE holds a pickled ``ps.address``. Like a Spark task of DeepDist.train, the client pulls first, then
pushes a known update and pulls again. It prints one JSON line: what it pulled, the local address its TCP
connections to the endpoints leave from, and how long it took; or, if a shard cannot be reached, the error it
raised and after how many seconds.
"""
import json
import pickle
import socket
import sys
import time

import numpy as np

from deepdist import Client, ShardTimeout


def source_address(endpoint: str):
    """The local address a plain TCP connection to ``endpoint`` leaves from (None if it cannot connect)."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as s:
            return s.getsockname()[0]
    except OSError as error:
        return f"unreachable: {error}"


def main():
    with open(sys.argv[1], "rb") as f:
        address = pickle.load(f)
    timeout = float(sys.argv[2])
    report = {"endpoints": list(address.endpoints)}
    started = time.monotonic()
    try:
        with Client(address, timeout=timeout) as client:
            client.pull(["b"])
            client.push({"w": (np.array([1, 998]), np.full((2, 4), 2.5, np.float32))})
            pulled = client.pull(["w"], rows=np.array([0, 1, 998]))["w"]
            report.update(pulled=pulled[:, 0].tolist(), stats=client.stats())
        report["source"] = [source_address(endpoint) for endpoint in address.endpoints]
    except ShardTimeout as error:
        report.update(error=type(error).__name__, message=str(error), endpoint=error.endpoint)
    report["seconds"] = time.monotonic() - started
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
