"""The FastAPI peer of the fan-out benchmark.

The seed article's ConnectionManager and WebSocket endpoint, verbatim
(/work/shared/seeds/000: "with this code 100 people can chat"), on uvicorn
with uvloop and the websockets implementation, one process. POST /broadcast
is the trigger: it awaits manager.broadcast() of one event, shaped and
sized like discoveryd's, and answers {"seq":N,"delivered":M}.

    /usr/bin/python3 tests/bench/peers/fastapi/server.py [HOST]

Once it listens it prints "ready agents=HOST:PORT http=HOST:PORT" (one port
serves both; the links go to /ws/0).
"""
import socket
import sys
from typing import List

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

EVENT = ('{"type":"event","epoch":"0f1e2d3c4b5a69788796a5b4c3d2e1f0",'
         '"seq":%d,"kind":"command","command":"Reload",'
         '"header":{"source":"bench"},"value":{"why":"bench"}}')


class ConnectionManager:
    def __init__(self):
        self.active_connections: List[WebSocket] = []

    async def connect(self, websocket: WebSocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket):
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str):
        for connection in self.active_connections:
            await connection.send_text(message)


manager = ConnectionManager()
app = FastAPI()
seq = 0


@app.websocket("/ws/{client_id}")
async def websocket_endpoint(websocket: WebSocket, client_id: int):
    await manager.connect(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            await manager.broadcast(f"Client #{client_id} says: {data}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)


@app.post("/broadcast")
async def broadcast():
    global seq
    seq += 1
    await manager.broadcast(EVENT % seq)
    return {"seq": seq, "delivered": len(manager.active_connections)}


class Server(uvicorn.Server):
    """Says where it listens once uvicorn serves the socket."""

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        host, port = sockets[0].getsockname()
        print(f"ready agents={host}:{port} http={host}:{port}", flush=True)


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    # httptools 0.1 (Debian 12) is too old for this uvicorn: h11 for HTTP.
    config = uvicorn.Config(app, loop="uvloop", http="h11", ws="websockets",
                            backlog=4096, log_level="warning",
                            lifespan="off")
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
