"""Benchmark peer standing in for the original Python stack: FastAPI on uvicorn.

- Static files: ``StaticFiles`` over the same ``web/dist`` (so the same hashed JS bundle) that
  Emergence embeds. StaticFiles has no precompressed-file support: it sends the identity body.
- ``/ws``: one broadcast room written the way the FastAPI documentation's ``ConnectionManager``
  does it: every text frame a client sends is sent to every connected client (the sender
  included), one ``await send_text`` after another. ``{"type":"ping"...}`` frames get a pong.
- ``/readyz``: 200 once the app serves.

Run: ``WEB_DIST=web/dist uvicorn fastapi_app:app --app-dir bench/peers --port 9003``
"""

import os
from pathlib import Path

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.staticfiles import StaticFiles

DIST = Path(os.environ.get("WEB_DIST", Path(__file__).resolve().parents[2] / "web" / "dist"))

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


class Room:
    """Everyone connected to /ws."""

    def __init__(self) -> None:
        self.clients: set[WebSocket] = set()

    async def broadcast(self, text: str) -> None:
        for client in list(self.clients):
            try:
                await client.send_text(text)
            except Exception:  # a client that went away mid-broadcast
                self.clients.discard(client)


room = Room()


@app.get("/readyz")
async def readyz() -> dict:
    return {"status": "ready"}


@app.websocket("/ws")
async def ws_room(ws: WebSocket) -> None:
    await ws.accept()
    room.clients.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            if len(text) < 64 and text.startswith('{"type":"ping"'):
                await ws.send_text('{"type":"pong","nonce":null}')
                continue
            await room.broadcast(text)
    except WebSocketDisconnect:
        pass
    finally:
        room.clients.discard(ws)


app.mount("/", StaticFiles(directory=DIST, html=True), name="static")
