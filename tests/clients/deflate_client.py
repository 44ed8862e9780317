"""A Python `websockets` client with its default permessage-deflate, for tests/interop.rs.

Usage: python deflate_client.py WS_URL. It prints one JSON object per line: what it
negotiated and joined ("ready"), then every message it receives until it has its own
two chat messages back and one broadcast of type "quotes"; then it exits 0.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str) -> None:
    async with connect(url, max_size=4 * 1024 * 1024) as ws:
        extensions = [e.name for e in ws.protocol.extensions]
        welcome = json.loads(await ws.recv())
        joined = json.loads(await ws.recv())
        big = "python " * 4000
        await ws.send(json.dumps({"type": "message", "room": "general", "message": big}))
        await ws.send(json.dumps({"type": "message", "room": "general", "message": "small"}))
        print(json.dumps({"ready": True, "extensions": extensions, "welcome": welcome["type"], "joined": joined["type"]}), flush=True)
        own, broadcasts = 0, 0
        while own < 2 or broadcasts < 1:
            message = json.loads(await ws.recv())
            if message.get("type") == "chat_message":
                own += 1
            if message.get("type") == "quotes":
                broadcasts += 1
            print(json.dumps({"got": message}), flush=True)


asyncio.run(main(sys.argv[1]))
