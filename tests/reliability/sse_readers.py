"""``python -m tests.reliability.sse_readers HOST:PORT N IDS``: N raw-socket SSE readers of one
``ProcessOrders`` stream of IDS ids each, read to the end as fast as the socket gives them; prints
``done`` and the bytes each read. A process of its own, so that the readers cost the server's loop
nothing (a client in its loop, or in threads of its process, would compete with the server)."""

from __future__ import annotations

import asyncio
import json
import sys


async def read_stream(address: str, ids: int) -> int:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps({"order_ids": [f"sse{i}" for i in range(ids)]}).encode()
    head = f"POST /v1/orders:process HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n"
    writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
    total, tail = 0, b""
    try:
        while b"event: complete" not in tail and b"event: error" not in tail:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            total += len(chunk)
            tail = (tail + chunk)[-256:]
    finally:
        writer.close()
    return total


async def main(address: str, readers: int, ids: int) -> None:
    print("started", flush=True)
    read = await asyncio.gather(*(read_stream(address, ids) for _ in range(readers)))
    print("done", *read, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
