"""A fast webhook receiver on 127.0.0.1 for the benchmark and the fault tests.

A bare asyncio HTTP/1.1 server (tens of thousands of requests a second, so it is never the
bottleneck). It counts every POST by (path, webhook-id) and remembers when each arrived.
Paths choose the behaviour:

    /ok/...      answer 200 at once
    /slow/...    answer 200 after 200 ms
    /dead/...    never answer (the sender's deadline cuts it)
    /hang/...    never answer, but counted (a hostile receiver the deadline cuts)
    /slow25/...  answer 200 after 25 s
    /poison/...  answer 429 with `Retry-After: 99999999999999`
    /fail/...    answer 500
    /wait/MS/... answer 200 after MS milliseconds

`POST /_heal` makes /hang/ answer 200 at once from then on (a hosting outage that ends).

`GET /_stats` answers JSON: totals, duplicates, overlaps (a (path, webhook-id) that arrived again
while an earlier request of it was still open: a second send while the first was in flight),
the most requests open at once per first path segment, and with `?times=1` the first arrival
time of every (path, webhook-id). `POST /_reset` forgets everything.

    python -m bench.receiver [--port 0]     # prints "port N" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter

SLOW_SECONDS = 0.2
SLOW25_SECONDS = 25.0


class Receiver:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.first_seen: dict[tuple[str, str], float] = {}
        self.active = 0  # requests being answered right now
        self.max_active = 0
        self.open: Counter[tuple[str, str]] = Counter()  # open requests per (path, id)
        self.overlaps = 0
        self.active_by_kind: Counter[str] = Counter()
        self.max_by_kind: Counter[str] = Counter()
        self.healed = asyncio.Event()  # /hang/ answers at once once set

    def record(self, path: str, webhook_id: str) -> None:
        key = (path, webhook_id)
        self.counts[key] += 1
        self.first_seen.setdefault(key, time.time())

    def stats(self, with_times: bool) -> dict[str, object]:
        total = sum(self.counts.values())
        body: dict[str, object] = {
            "total": total,
            "unique": len(self.counts),
            "duplicates": total - len(self.counts),
            "max_per_id": max(self.counts.values(), default=0),
            "max_in_flight": self.max_active,
            "active": self.active,
            "overlaps": self.overlaps,
            "max_in_flight_by_kind": dict(self.max_by_kind),
            "active_by_kind": {kind: n for kind, n in self.active_by_kind.items() if n},
            "first_at": min(self.first_seen.values(), default=None),
            "last_at": max(self.first_seen.values(), default=None),
        }
        if with_times:
            body["times"] = [[p, w, t] for (p, w), t in self.first_seen.items()]
        return body

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                status, body = await self.respond(method, target, headers, reader)
                extra = b"retry-after: 99999999999999\r\n" if status == 429 else b""
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                    % (status, len(body))
                    + extra
                    + b"\r\n"
                    + body
                )
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            ValueError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.close()

    async def respond(
        self, method: str, target: str, headers: dict[str, str], reader: asyncio.StreamReader
    ) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        if method == "GET" and path == "/_stats":
            return 200, json.dumps(self.stats("times=1" in query)).encode()
        if method == "POST" and path == "/_reset":
            self.counts.clear()
            self.first_seen.clear()
            self.max_active = self.overlaps = 0
            self.max_by_kind.clear()
            self.healed.clear()
            return 200, b"{}"
        if method == "POST" and path == "/_heal":
            self.healed.set()
            return 200, b"{}"
        key = (path, headers.get("webhook-id", ""))
        kind = path.split("/")[1] if path.count("/") > 1 else path
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.active_by_kind[kind] += 1
        self.max_by_kind[kind] = max(self.max_by_kind[kind], self.active_by_kind[kind])
        try:
            if path.startswith("/dead/"):
                await asyncio.sleep(3600)
            if self.open[key]:
                self.overlaps += 1
            self.open[key] += 1
            try:
                self.record(*key)
                if path.startswith("/hang/") and not self.healed.is_set():
                    # Open until the sender gives up and closes (then a retry is no overlap),
                    # or the outage ends.
                    closed = asyncio.ensure_future(reader.read(1))
                    healed = asyncio.ensure_future(self.healed.wait())
                    await asyncio.wait(
                        {closed, healed}, timeout=3600, return_when="FIRST_COMPLETED"
                    )
                    for waiting in (closed, healed):
                        waiting.cancel()
                    if not self.healed.is_set():
                        raise ConnectionError("the sender gave up")
                if path.startswith("/wait/"):
                    await asyncio.sleep(int(path.split("/")[2]) / 1000)
                if path.startswith("/slow/"):
                    await asyncio.sleep(SLOW_SECONDS)
                if path.startswith("/slow25/"):
                    await asyncio.sleep(SLOW25_SECONDS)
            finally:
                self.open[key] -= 1
        finally:
            self.active -= 1
            self.active_by_kind[kind] -= 1
        if path.startswith("/fail/"):
            return 500, b'{"ok":false}'
        if path.startswith("/poison/"):
            return 429, b'{"ok":false}'
        return 200, b'{"ok":true}'


async def serve(port: int) -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port, backlog=1024)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
