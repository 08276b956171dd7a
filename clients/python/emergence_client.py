"""A small Python client for the Emergence chat server.

Written only from docs/protocol.md (public contract v1). Two layers:

* ``Api``: the HTTP API (accounts, threads, history, sending over HTTP), with httpx.
* ``Connection``: one WebSocket connection (raw JSON frames, close codes), with ``websockets``.
* ``ChatClient``: the recommended client algorithm of protocol.md §9 on top of both: an outbox of
  unacknowledged sends, ``last_seq`` per thread, resubscription with ``after_seq`` and resending of
  the outbox after every reconnect, and per-thread message lists deduplicated by ``seq``.

Everything on the WebSocket side is asyncio; the HTTP side is synchronous (it is only used for
setup and history, which are quick).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

__all__ = [
    "ApiError",
    "Api",
    "Connection",
    "ChatClient",
    "UpgradeRefused",
    "Closed",
    "new_client_id",
]

Frame = dict[str, Any]

#: Close codes of protocol.md §7.15.
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_IDLE = 4408

#: Text frames up to this many bytes are accepted (§7.3); larger ones close with 1009.
MAX_FRAME_BYTES = 256 * 1024


def new_client_id() -> str:
    """A fresh idempotency key (§6: use globally unique IDs such as UUIDv4)."""
    return str(uuid.uuid4())


# ---- HTTP ----------------------------------------------------------------------------------------


class ApiError(Exception):
    """A non-2xx answer: ``{"error": {"code", "message", "fields"?}}`` (§2)."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None,
                 retry_after: int | None, headers: httpx.Headers):
        super().__init__(f"{status} {code}: {message}" + (f" {fields}" if fields else ""))
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after
        self.headers = headers


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    code, message, fields = "", resp.text, None
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code", ""))
            message = str(err.get("message", ""))
            fields = err.get("fields") if isinstance(err.get("fields"), dict) else None
    except ValueError:
        pass
    ra = resp.headers.get("retry-after")
    raise ApiError(resp.status_code, code, message, fields,
                   int(ra) if ra and ra.isdigit() else None, resp.headers)


class Api:
    """The HTTP API of §5. Authenticates with ``Authorization: Bearer`` (never the cookie, so the
    Origin rule of §3 never applies)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 15.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.user: dict[str, Any] | None = None
        # A fresh cookie jar that we never send from: the Bearer header is the credential.
        # The server closes a keep-alive connection idle for 5 s (docs/protocol.md,
        # "Connections"): expire pooled connections before that.
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            trust_env=False,
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Api":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Low level: the response, whatever its status.
    def request(self, method: str, path: str, json_body: Any = None, *, token: str | None | bool = True,
                params: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Accept": "application/json"}
        tok = self.token if token is True else (token or None)
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        self._http.cookies.clear()
        return self._http.request(method, path, **kwargs)

    def call(self, method: str, path: str, json_body: Any = None, **kw: Any) -> Any:
        resp = self.request(method, path, json_body, **kw)
        _raise_for(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # Health (§5.1)
    def readyz(self) -> tuple[int, dict[str, Any]]:
        resp = self._http.get("/readyz")
        return resp.status_code, resp.json()

    # Auth (§5.2)
    def register(self, username: str, password: str) -> dict[str, Any]:
        r = self.call("POST", "/api/auth/register", {"username": username, "password": password}, token=False)
        self.token, self.user = r["token"], r["user"]
        return r

    def login(self, username: str, password: str) -> dict[str, Any]:
        r = self.call("POST", "/api/auth/login", {"username": username, "password": password}, token=False)
        self.token, self.user = r["token"], r["user"]
        return r

    def logout(self) -> None:
        self.call("POST", "/api/auth/logout")

    def me(self) -> dict[str, Any]:
        return self.call("GET", "/api/me")

    # Agents (§5.3)
    def agents(self) -> list[dict[str, Any]]:
        return self.call("GET", "/api/agents")["agents"]

    # Threads (§5.4)
    def create_thread(self, title: str, agents: Iterable[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"title": title}
        if agents is not None:
            body["agents"] = list(agents)
        return self.call("POST", "/api/threads", body)

    def threads(self) -> list[dict[str, Any]]:
        return self.call("GET", "/api/threads")["threads"]

    def thread(self, thread_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/threads/{quote(thread_id, safe='')}")

    def add_member(self, thread_id: str, username: str) -> None:
        self.call("POST", f"/api/threads/{quote(thread_id, safe='')}/members", {"username": username})

    # Messages (§5.5)
    def messages(self, thread_id: str, *, after_seq: int | None = None, before_seq: int | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("after_seq", after_seq), ("before_seq", before_seq), ("limit", limit))
                  if v is not None}
        return self.call("GET", f"/api/threads/{quote(thread_id, safe='')}/messages", params=params)["messages"]

    def all_messages(self, thread_id: str) -> list[dict[str, Any]]:
        """The whole history, with the catch-up recipe of §5.5."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.messages(thread_id, after_seq=after, limit=500)
            out.extend(page)
            if len(page) < 500:
                return out
            after = page[-1]["seq"]

    def post_message(self, thread_id: str, body: str, *, client_id: str | None = None,
                     agent: str | None = None) -> tuple[int, dict[str, Any]]:
        """POST a message; returns (status, body): 201 new, 200 repeat, 202 queued (§5.5)."""
        payload: dict[str, Any] = {"client_id": client_id or new_client_id(), "body": body}
        if agent is not None:
            payload["agent"] = agent
        resp = self.request("POST", f"/api/threads/{quote(thread_id, safe='')}/messages", payload)
        _raise_for(resp)
        return resp.status_code, resp.json()


# ---- WebSocket -----------------------------------------------------------------------------------


class UpgradeRefused(Exception):
    """The server answered the upgrade with plain HTTP (§7.2)."""

    def __init__(self, status: int, body: bytes, headers: Any):
        super().__init__(f"upgrade refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.headers = headers


class Closed(Exception):
    """The connection closed while we were waiting for a frame."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"connection closed ({code} {reason!r})")
        self.code = code
        self.reason = reason


def ws_url(base_url: str, token: str | None = None) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = f"token={quote(token, safe='')}" if token else ""
    return urlunsplit((scheme, parts.netloc, "/ws", query, ""))


class Connection:
    """One WebSocket connection. Every received frame is kept in ``frames`` (in arrival order);
    ``wait_for`` looks for one that matches. The close code lands in ``close_code`` (None for an
    abnormal close without a close frame, i.e. 1006)."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[Frame] = []
        self.non_json: list[Any] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self._nonce = 0

    @classmethod
    async def open(cls, base_url: str, token: str | None, *, via: str = "header",
                   headers: dict[str, str] | None = None, timeout: float = 10.0) -> "Connection":
        """Connects and returns at once (without waiting for ``welcome``).

        ``via``: ``"header"`` (Authorization: Bearer), ``"query"`` (?token=) or ``"none"``.
        """
        extra = dict(headers or {})
        if via == "header" and token:
            extra["Authorization"] = f"Bearer {token}"
        url = ws_url(base_url, token if via == "query" else None)
        try:
            ws = await connect(
                url,
                additional_headers=extra,
                compression=None,  # §7.1: no extensions
                proxy=None,
                open_timeout=timeout,
                max_size=4 * MAX_FRAME_BYTES,  # a pong can echo a large nonce
                ping_interval=None,  # the server pings us (§7.11); we answer automatically
                close_timeout=2,
            )
        except InvalidStatus as e:
            raise UpgradeRefused(e.response.status_code, e.response.body or b"", e.response.headers) from e
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):  # §7.3: the server never sends binary frames
                    self.non_json.append(raw)
                    continue
                try:
                    f = json.loads(raw)
                except ValueError:
                    self.non_json.append(raw)
                    continue
                if isinstance(f, dict) and isinstance(f.get("type"), str):
                    self.frames.append(f)
                else:
                    self.non_json.append(f)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.close_code
            self.close_code = rcvd if rcvd != 1006 else None
            self.close_reason = self.ws.close_reason or ""
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    # Sending -------------------------------------------------------------------------------------

    async def send(self, frame: Frame | str | bytes) -> None:
        """Sends a frame: a dict as JSON text, a str as-is (text), bytes as a binary frame."""
        data = json.dumps(frame) if isinstance(frame, dict) else frame
        await self.ws.send(data)

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    # Receiving -----------------------------------------------------------------------------------

    def mark(self) -> int:
        """Index of the next frame to arrive: pass it as ``since`` to only look at newer frames."""
        return len(self.frames)

    async def wait_for(self, pred: Callable[[Frame], bool] | str, timeout: float = 10.0,
                       since: int = 0) -> Frame:
        """The first frame (at index >= since) that matches ``pred`` (or has that ``type``)."""
        match = (lambda f: f["type"] == pred) if isinstance(pred, str) else pred
        deadline = asyncio.get_running_loop().time() + timeout
        i = since
        async with self._changed:
            while True:
                while i < len(self.frames):
                    if match(self.frames[i]):
                        return self.frames[i]
                    i += 1
                if self.closed.is_set():
                    raise Closed(self.close_code, self.close_reason)
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise asyncio.TimeoutError(
                        f"no matching frame within {timeout}s; last frames: {self.frames[-5:]}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass

    async def welcome(self, timeout: float = 10.0) -> Frame:
        f = await self.wait_for(lambda f: True, timeout)
        if f["type"] != "welcome":
            raise AssertionError(f"first frame is not welcome: {f}")
        return f

    async def ping(self, nonce: Any = None, timeout: float = 10.0) -> Frame:
        """Sends an application ping and waits for its pong (§7.11)."""
        if nonce is None:
            self._nonce += 1
            nonce = f"n{self._nonce}"
        since = self.mark()
        await self.send({"type": "ping", "nonce": nonce})
        return await self.wait_for(lambda f: f["type"] == "pong" and f.get("nonce") == nonce, timeout, since)

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code, self.close_reason

    async def close(self, code: int = 1000, reason: str = "bye") -> None:
        try:
            await self.ws.close(code, reason)
        except Exception:
            pass
        try:
            await asyncio.wait_for(self._reader, 5)
        except (asyncio.TimeoutError, Exception):
            self._reader.cancel()

    def messages(self, thread: str, since: int = 0) -> list[Frame]:
        return [f for f in self.frames[since:] if f["type"] == "message" and f.get("thread") == thread]

    def of_type(self, type_: str, since: int = 0) -> list[Frame]:
        return [f for f in self.frames[since:] if f["type"] == type_]


# ---- The recommended algorithm (§9) --------------------------------------------------------------


@dataclass
class Pending:
    frame: Frame
    state: str = "sending"  # sending | queued
    acks: list[Frame] = field(default_factory=list)


class ChatClient:
    """A reliable client: outbox + last_seq + resubscribe/resend after every (re)connect (§9).

    Handle frames by calling ``pump()`` (or awaiting ``wait_*`` helpers that pump for you)."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.token = token
        self.conn: Connection | None = None
        self.outbox: dict[str, Pending] = {}  # insertion ordered
        self.last_seq: dict[str, int] = {}
        self.history: dict[str, dict[int, Frame]] = {}
        self.open_threads: list[str] = []
        self.persisted: dict[str, Frame] = {}  # client_id -> persisted ack
        self.failed: dict[str, Frame] = {}  # client_id -> error frame
        self.gaps: list[tuple[str, int, int]] = []  # (thread, expected, got) - should stay empty
        self.duplicates: list[Frame] = []
        self._cursor = 0

    async def connect(self) -> Frame:
        self.conn = await Connection.open(self.base_url, self.token)
        self._cursor = 0
        welcome = await self.conn.welcome()
        self._cursor = 1
        for t in self.open_threads:
            await self._subscribe(t)
        for p in list(self.outbox.values()):
            await self.conn.send(p.frame)
        return welcome

    async def disconnect(self) -> None:
        if self.conn:
            await self.conn.close()

    async def open_thread(self, thread: str) -> Frame:
        if thread not in self.open_threads:
            self.open_threads.append(thread)
        return await self._subscribe(thread)

    async def _subscribe(self, thread: str) -> Frame:
        assert self.conn
        frame: Frame = {"type": "subscribe", "thread": thread}
        since = self.conn.mark()
        if self.last_seq.get(thread, 0) > 0:
            frame["after_seq"] = self.last_seq[thread]
        else:
            frame["after_seq"] = 0
        await self.conn.send(frame)
        return await self.conn.wait_for(
            lambda f: (f["type"] == "subscribed" and f.get("thread") == thread) or f["type"] == "error",
            since=since)

    async def send(self, thread: str, body: str, agent: str | None = None, client_id: str | None = None) -> str:
        cid = client_id or new_client_id()
        frame: Frame = {"type": "send", "thread": thread, "client_id": cid, "body": body}
        if agent:
            frame["agent"] = agent
        self.outbox[cid] = Pending(frame)
        if self.conn and not self.conn.closed.is_set():
            try:
                await self.conn.send(frame)
            except ConnectionClosed:
                pass  # goes out after the next welcome
        return cid

    def pump(self) -> None:
        """Applies every frame that arrived since the last call."""
        if not self.conn:
            return
        frames = self.conn.frames
        while self._cursor < len(frames):
            self._handle(frames[self._cursor])
            self._cursor += 1

    def _handle(self, f: Frame) -> None:
        t = f["type"]
        if t == "message":
            thread = f.get("thread") or f.get("thread_id")
            seq = f["seq"]
            last = self.last_seq.get(thread, 0)
            hist = self.history.setdefault(thread, {})
            if seq in hist:
                self.duplicates.append(f)
                return
            if seq <= last:
                self.duplicates.append(f)
            elif seq != last + 1:
                self.gaps.append((thread, last + 1, seq))
            hist[seq] = f
            self.last_seq[thread] = max(last, seq)
            cid = f.get("client_id")
            if cid in self.outbox and f.get("author", {}).get("kind") == "user":
                self.persisted.setdefault(cid, {"type": "ack", "client_id": cid, "status": "persisted",
                                                "seq": seq, "message_id": f["id"], "thread": thread})
                del self.outbox[cid]
        elif t == "ack":
            cid = f.get("client_id")
            if f.get("status") == "persisted":
                self.persisted[cid] = f
                self.outbox.pop(cid, None)
            elif f.get("status") == "queued" and cid in self.outbox:
                self.outbox[cid].state = "queued"
        elif t == "error":
            cid = f.get("client_id")
            if cid in self.outbox and f.get("code") not in ("rate_limited", "unavailable"):
                self.failed[cid] = f
                del self.outbox[cid]
        elif t == "resync":
            self.history.pop(f.get("thread"), None)

    async def wait_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        assert self.conn
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self.pump()
            if cond():
                return
            if self.conn.closed.is_set():
                raise Closed(self.conn.close_code, self.conn.close_reason)
            if asyncio.get_running_loop().time() > deadline:
                raise asyncio.TimeoutError("condition not met in time")
            await asyncio.sleep(0.02)

    def bodies(self, thread: str) -> list[str]:
        return [m["body"] for _, m in sorted(self.history.get(thread, {}).items())]

    def seqs(self, thread: str) -> list[int]:
        return sorted(self.history.get(thread, {}))
