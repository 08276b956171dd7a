"""Protocol conformance tests: a Python client written only from docs/protocol.md.

The server binary comes from EMERGENCE_BIN (default: target/debug/emergence of this repository).
Each server runs on a free port with its own SQLite database in a temporary directory.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from emergence_client import (
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    MAX_FRAME_BYTES,
    Api,
    ApiError,
    ChatClient,
    Closed,
    Connection,
    UpgradeRefused,
    new_client_id,
)

HERE = Path(__file__).resolve().parent
DEFAULT_BIN = HERE.parent.parent / "target" / "debug" / "emergence"
PASSWORD = "py-client-password-1"


# ---- the server under test -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str):
        self.bin = os.environ.get("EMERGENCE_BIN") or str(DEFAULT_BIN)
        self.dir = tempfile.mkdtemp(prefix=f"emergence-py-{name}-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(self.dir) / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCE_") and k not in (
            "DATABASE_URL", "PORT", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")}
        env.update({
            "PORT": str(self.port),
            "DATABASE_URL": f"sqlite://{self.dir}/py.db",
            "EMERGENCE_AUTH_RATE_PER_MIN": "0",
            "EMERGENCE_REGISTRATION": "open",
        })
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bin, "serve"], env=env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False)
                if r.status_code == 200:
                    return
                last = f"status {r.status_code}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"/readyz not 200 after {timeout}s ({last}):\n{self.log_tail()}")

    def sigterm(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 30.0) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def dispose(self) -> int | None:
        """Stops the server and removes its directory (kept when EMERGENCE_KEEP_DATA is set)."""
        code = self.stop()
        if not os.environ.get("EMERGENCE_KEEP_DATA"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return code

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def server():
    s = Server("main")
    s.start()
    yield s
    tail = s.log_tail()
    code = s.dispose()
    assert code == 0, f"server exit code {code} after SIGTERM:\n{tail}"


_n = 0


def uname(prefix: str) -> str:
    global _n
    _n += 1
    return f"{prefix}_{uuid.uuid4().hex[:10]}{_n}"[:32]


def identity(api: Api) -> dict:
    """Who the user is, as the welcome frame names them: `id` and `username`."""
    assert api.user is not None
    return {"id": api.user["id"], "username": api.user["username"]}


def new_user(server: Server, prefix: str) -> Api:
    api = Api(server.url)
    api.register(uname(prefix), PASSWORD)
    return api


def run(coro, timeout: float = 90.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(server: Server, api: Api, **kw) -> Connection:
    c = await Connection.open(server.url, api.token, **kw)
    w = await c.welcome()
    # The welcome names the user ({id, username}); register/login also give role and status (v2).
    assert w["user"] == identity(api), w
    assert w["db"] in ("up", "down")
    assert isinstance(w["connection_id"], str)
    return c


async def subscribe(c: Connection, thread: str, after_seq: int | None = None) -> dict:
    since = c.mark()
    frame = {"type": "subscribe", "thread": thread}
    if after_seq is not None:
        frame["after_seq"] = after_seq
    await c.send(frame)
    f = await c.wait_for(lambda f: f["type"] in ("subscribed", "error"), since=since)
    assert f["type"] == "subscribed" and f["thread"] == thread, f
    return f


def assert_error(exc: ApiError, status: int, code: str) -> None:
    assert (exc.status, exc.code) == (status, code), f"expected {status} {code}, got {exc}"


# ---- accounts, sessions and revocation -----------------------------------------------------------


def test_register_login_and_validation(server):
    api = Api(server.url)
    name = uname("Reg")
    resp = api.request("POST", "/api/auth/register", {"username": name, "password": PASSWORD}, token=False)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["user"]["username"] == name  # the case is preserved
    assert isinstance(body["token"], str) and body["token"]
    cookie = resp.headers.get("set-cookie", "")
    assert cookie.startswith(f"emergence_session={body['token']};"), cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert resp.headers.get("x-request-id")

    # Usernames are unique case-insensitively.
    with pytest.raises(ApiError) as e:
        api.register(name.upper(), PASSWORD)
    assert_error(e.value, 409, "conflict")

    # Every bad field is listed.
    with pytest.raises(ApiError) as e:
        api.register("x!", "short")
    assert_error(e.value, 422, "validation")
    assert set(e.value.fields) >= {"username", "password"}, e.value.fields

    # Login: case-insensitive username; each login is a new session (a new token).
    first = body["token"]
    r = api.login(name.lower(), PASSWORD)
    assert r["user"] == body["user"] and r["token"] != first
    with pytest.raises(ApiError) as e:
        api.login(name, "wrong password")
    assert_error(e.value, 401, "unauthorized")
    with pytest.raises(ApiError) as e:
        api.login("no", "x")  # breaks the rules: still 401, not 422
    assert_error(e.value, 401, "unauthorized")

    assert api.me() == body["user"]
    resp = api.request("GET", "/api/me", token=False)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
    resp = api.request("GET", "/api/me", token="v1.forged.token")
    assert resp.status_code == 401
    # Unknown /api/ route: JSON 404.
    resp = api.request("GET", "/api/nope")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_logout_revokes_only_that_session_and_closes_its_websockets(server):
    async def scenario():
        name = uname("rev")
        a = Api(server.url)
        a.register(name, PASSWORD)
        b = Api(server.url)
        b.login(name, PASSWORD)
        assert a.token != b.token

        ws_a = await connect(server, a)  # Authorization: Bearer
        ws_a2 = await connect(server, a, via="query")  # ?token=
        ws_b = await connect(server, b)

        started = time.monotonic()
        resp = a.request("POST", "/api/auth/logout")
        assert resp.status_code == 204, resp.text
        assert "emergence_session=;" in resp.headers.get("set-cookie", "")
        assert "Max-Age=0" in resp.headers.get("set-cookie", "")

        for ws in (ws_a, ws_a2):
            code, _ = await ws.wait_closed(timeout=10)
            assert code == CLOSE_UNAUTHORIZED, f"close code {code}"
            errs = ws.of_type("error")
            assert errs and errs[-1]["code"] == "unauthorized", ws.frames
        assert time.monotonic() - started < 5.5

        # The other session of the same user is untouched.
        pong = await ws_b.ping("still-here")
        assert pong["nonce"] == "still-here"
        assert b.me()["username"] == name

        # The revoked token is refused on HTTP at once...
        resp = a.request("GET", "/api/me")
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
        # ...and on WebSocket: the upgrade completes, then an error frame and close 4401.
        c = await Connection.open(server.url, a.token)
        code, _ = await c.wait_closed(timeout=10)
        assert code == CLOSE_UNAUTHORIZED
        assert [f["code"] for f in c.frames] == ["unauthorized"], c.frames
        assert c.frames[0]["type"] == "error"

        # No credential at all, and a forged one: the same.
        for token, via in ((None, "none"), ("v1.garbage", "query"), ("v1.garbage", "header")):
            c = await Connection.open(server.url, token, via=via)
            code, _ = await c.wait_closed(timeout=10)
            assert code == CLOSE_UNAUTHORIZED, (via, code)
            assert c.frames and c.frames[0]["type"] == "error" and c.frames[0]["code"] == "unauthorized"

        # Logging in again gives a working session.
        a.login(name, PASSWORD)
        ws_new = await connect(server, a)
        await ws_new.ping()
        await ws_new.close()
        await ws_b.close()

    run(scenario())


def test_credential_precedence(server):
    async def scenario():
        api = new_user(server, "prec")
        # ?token= is for WebSocket only: HTTP ignores it.
        r = httpx.get(f"{server.url}/api/me", params={"token": api.token}, trust_env=False)
        assert r.status_code == 401, r.text
        # A cookie works on HTTP (GET needs no Origin check).
        r = httpx.get(f"{server.url}/api/me", cookies={"emergence_session": api.token}, trust_env=False)
        assert r.status_code == 200 and r.json() == api.user
        # The first credential present counts: a bad Authorization header wins over a good ?token=
        # (and over a good cookie), even when it is not of the form "Bearer <token>".
        for header in ("Basic Zm9vOmJhcg==", "Bearer not-a-token"):
            c = await Connection.open(server.url, api.token, via="query", headers={"Authorization": header})
            code, _ = await c.wait_closed(timeout=10)
            assert code == CLOSE_UNAUTHORIZED, (header, code)
            r = httpx.get(f"{server.url}/api/me", headers={"Authorization": header},
                          cookies={"emergence_session": api.token}, trust_env=False)
            assert r.status_code == 401, (header, r.status_code)
        # A bad ?token= wins over a good cookie.
        c = await Connection.open(server.url, "bogus", via="query",
                                  headers={"Cookie": f"emergence_session={api.token}"})
        code, _ = await c.wait_closed(timeout=10)
        assert code == CLOSE_UNAUTHORIZED
        # The cookie alone authenticates a WebSocket (no Origin header: not a browser).
        c = await Connection.open(server.url, None, via="none",
                                  headers={"Cookie": f"emergence_session={api.token}"})
        assert (await c.welcome())["user"] == identity(api)
        await c.close()
        # A cookie upgrade from a foreign Origin is refused before the upgrade (403)...
        with pytest.raises(UpgradeRefused) as e:
            await Connection.open(server.url, None, via="none", headers={
                "Cookie": f"emergence_session={api.token}", "Origin": "https://evil.example"})
        assert e.value.status == 403
        # ...but the same Origin with ?token= is fine.
        c = await Connection.open(server.url, api.token, via="query", headers={"Origin": "https://evil.example"})
        await c.welcome()
        await c.close()

    run(scenario())


# ---- authorization -------------------------------------------------------------------------------


def test_a_stranger_cannot_read_post_subscribe_or_learn_existence(server):
    async def scenario():
        owner = new_user(server, "own")
        stranger = new_user(server, "str")
        t = owner.create_thread("  Private plans  ")
        assert t["title"] == "Private plans" and t["last_seq"] == 0 and t["owner_id"] == owner.user["id"]
        owner.post_message(t["id"], "secret")
        missing = str(uuid.uuid4())

        def answers(thread_id: str) -> list[tuple[int, str]]:
            out = []
            for method, path, body in (
                ("GET", f"/api/threads/{thread_id}", None),
                ("GET", f"/api/threads/{thread_id}/messages", None),
                ("GET", f"/api/threads/{thread_id}/messages?after_seq=0", None),
                ("POST", f"/api/threads/{thread_id}/messages", {"client_id": new_client_id(), "body": "hi"}),
                ("POST", f"/api/threads/{thread_id}/members", {"username": stranger.user["username"]}),
            ):
                r = stranger.request(method, path, body)
                out.append((r.status_code, r.json()["error"]["code"]))
            return out

        existing = answers(t["id"])
        assert all(a == (404, "not_found") for a in existing), existing
        # A thread that does not exist looks exactly the same.
        assert answers(missing) == existing
        assert all(x["id"] != t["id"] for x in stranger.threads())

        ws = await connect(server, stranger)
        for thread_id in (t["id"], missing):
            since = ws.mark()
            await ws.send({"type": "subscribe", "thread": thread_id, "after_seq": 0})
            f = await ws.wait_for(lambda f: f["type"] in ("error", "subscribed", "message"), since=since)
            assert f["type"] == "error" and f["code"] == "not_found", f

            cid = new_client_id()
            since = ws.mark()
            await ws.send({"type": "send", "thread": thread_id, "client_id": cid, "body": "let me in"})
            f = await ws.wait_for(lambda f: f["type"] in ("error", "ack"), since=since)
            assert f["type"] == "error" and f["code"] == "not_found" and f["client_id"] == cid, f
        await ws.ping()  # still open
        assert ws.messages(t["id"]) == []

        # Nothing was stored by the stranger.
        assert [m["body"] for m in owner.all_messages(t["id"])] == ["secret"]

        # A member who is not the owner may read but not add members (403).
        owner.add_member(t["id"], stranger.user["username"])
        owner.add_member(t["id"], stranger.user["username"].upper())  # already a member: 204 again
        assert [m["body"] for m in stranger.messages(t["id"])] == ["secret"]
        third = new_user(server, "thr")
        with pytest.raises(ApiError) as e:
            stranger.add_member(t["id"], third.user["username"])
        assert_error(e.value, 403, "forbidden")
        with pytest.raises(ApiError) as e:
            owner.add_member(t["id"], uname("ghost"))
        assert_error(e.value, 404, "not_found")
        await ws.close()

    run(scenario())


# ---- live chat -----------------------------------------------------------------------------------


def test_two_users_chat_every_message_once_in_seq_order(server):
    async def scenario():
        alice = new_user(server, "alice")
        bob = new_user(server, "bob")
        t = alice.create_thread("Chat")["id"]
        alice.add_member(t, bob.user["username"])

        wa = await connect(server, alice)
        wb = await connect(server, bob)
        assert (await subscribe(wa, t))["head_seq"] == 0
        assert (await subscribe(wb, t, after_seq=0))["head_seq"] == 0

        # Both talk at the same time.
        sent: dict[str, tuple[str, str]] = {}  # client_id -> (who, body)

        async def talk(ws: Connection, who: str, n: int):
            for i in range(n):
                cid = new_client_id()
                body = f"{who} says {i}"
                sent[cid] = (who, body)
                await ws.send({"type": "send", "thread": t, "client_id": cid, "body": f"  {body}\n"})
                await asyncio.sleep(0.005)

        n = 15
        await asyncio.gather(talk(wa, "alice", n), talk(wb, "bob", n))
        total = 2 * n
        for ws in (wa, wb):
            await ws.wait_for(lambda f: f["type"] == "message" and f["seq"] == total, timeout=20)
        await asyncio.sleep(0.3)  # let any duplicate show up

        for ws, who_am_i in ((wa, "alice"), (wb, "bob")):
            msgs = ws.messages(t)
            assert [m["seq"] for m in msgs] == list(range(1, total + 1)), [m["seq"] for m in msgs]
            assert {m["client_id"] for m in msgs} == set(sent)
            for m in msgs:
                who, body = sent[m["client_id"]]
                assert m["body"] == body  # trimmed
                assert m["thread"] == m["thread_id"] == t
                assert m["author"]["kind"] == "user" and m["author"]["name"] in (alice.user["username"],
                                                                                 bob.user["username"])
                assert m["created_at"].endswith("Z") and len(m["created_at"]) == 24, m["created_at"]
            # Acks only for our own sends, one each, matching the stored message.
            acks = ws.of_type("ack")
            mine = {cid for cid, (who, _) in sent.items() if who == who_am_i}
            assert {a["client_id"] for a in acks} == mine
            assert len(acks) == len(mine)
            by_cid = {m["client_id"]: m for m in msgs}
            for a in acks:
                assert a["status"] == "persisted"
                assert a["thread"] == t
                assert (a["seq"], a["message_id"]) == (by_cid[a["client_id"]]["seq"], by_cid[a["client_id"]]["id"])
            assert not ws.of_type("error"), ws.of_type("error")

        # Per sender, the order of sending is the order of seq.
        for who in ("alice", "bob"):
            bodies = [m["body"] for m in wa.messages(t) if m["body"].startswith(who)]
            assert bodies == [f"{who} says {i}" for i in range(n)]

        # HTTP history agrees, in ascending seq whichever way we page.
        hist = alice.all_messages(t)
        assert [m["seq"] for m in hist] == list(range(1, total + 1))
        assert [m["id"] for m in hist] == [m["id"] for m in wa.messages(t)]
        assert [m["seq"] for m in bob.messages(t, limit=5)] == [26, 27, 28, 29, 30]
        assert [m["seq"] for m in bob.messages(t, before_seq=10, limit=3)] == [7, 8, 9]
        assert [m["seq"] for m in bob.messages(t, after_seq=10, limit=3)] == [11, 12, 13]
        with pytest.raises(ApiError) as e:
            bob.messages(t, after_seq=3, before_seq=9)
        assert_error(e.value, 422, "validation")
        assert "before_seq" in e.value.fields
        with pytest.raises(ApiError) as e:
            bob.messages(t, limit=0)
        assert_error(e.value, 422, "validation")
        assert alice.thread(t)["last_seq"] == total
        assert alice.threads()[0]["id"] == t

        # A message posted over HTTP reaches both sockets too.
        status, m = bob.post_message(t, "over http")
        assert status == 201 and m["seq"] == total + 1
        for ws in (wa, wb):
            f = await ws.wait_for(lambda f: f["type"] == "message" and f["seq"] == total + 1)
            assert f["id"] == m["id"] and f["body"] == "over http"
        await wa.close()
        await wb.close()

    run(scenario())


def test_idempotent_resend_gives_the_same_message(server):
    async def scenario():
        alice = new_user(server, "idem")
        bob = new_user(server, "idemb")
        t = alice.create_thread("Idempotency")["id"]
        alice.add_member(t, bob.user["username"])
        wa = await connect(server, alice)
        wb = await connect(server, bob)
        await subscribe(wa, t, 0)
        await subscribe(wb, t, 0)

        cid = new_client_id()
        await wa.send({"type": "send", "thread": t, "client_id": cid, "body": "once"})
        first = await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid)
        assert first["status"] == "persisted" and first["seq"] == 1
        # The same client_id again (with another body): the original, nothing new.
        since = wa.mark()
        await wa.send({"type": "send", "thread": t, "client_id": cid, "body": "twice?"})
        again = await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid, since=since)
        assert (again["status"], again["seq"], again["message_id"]) == ("persisted", 1, first["message_id"])
        # Also from a second connection of the same user (a reconnect).
        wa2 = await connect(server, alice)
        await wa2.send({"type": "send", "thread": t, "client_id": cid, "body": "thrice?"})
        ack3 = await wa2.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid)
        assert (ack3["seq"], ack3["message_id"]) == (1, first["message_id"])
        # Over HTTP: 200 with the original message.
        status, m = alice.post_message(t, "http repeat", client_id=cid)
        assert status == 200 and m["id"] == first["message_id"] and m["seq"] == 1 and m["body"] == "once"

        # Another author using that client_id: conflict (HTTP and WS).
        with pytest.raises(ApiError) as e:
            bob.post_message(t, "mine", client_id=cid)
        assert_error(e.value, 409, "conflict")
        await wb.send({"type": "send", "thread": t, "client_id": cid, "body": "mine"})
        err = await wb.wait_for(lambda f: f["type"] == "error" and f.get("client_id") == cid)
        assert err["code"] == "conflict"

        # HTTP first, then WS with the same id.
        cid2 = new_client_id()
        status, m2 = alice.post_message(t, "second", client_id=cid2)
        assert status == 201 and m2["seq"] == 2
        status, m2b = alice.post_message(t, "second", client_id=cid2)
        assert status == 200 and m2b == m2
        await wa.send({"type": "send", "thread": t, "client_id": cid2, "body": "second"})
        a2 = await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid2)
        assert (a2["seq"], a2["message_id"]) == (2, m2["id"])

        # The same client_id in another thread is a different message (scoped per thread).
        t2 = alice.create_thread("Other")["id"]
        status, m3 = alice.post_message(t2, "elsewhere", client_id=cid)
        assert status == 201 and m3["seq"] == 1 and m3["id"] != first["message_id"]

        # A fresh message afterwards gets seq 3: no gap, no second copy anywhere.
        status, m4 = alice.post_message(t, "third")
        assert status == 201 and m4["seq"] == 3
        for ws in (wa, wb):
            await ws.wait_for(lambda f: f["type"] == "message" and f["seq"] == 3)
            await asyncio.sleep(0.2)
            assert [m["seq"] for m in ws.messages(t)] == [1, 2, 3]
            assert ws.messages(t)[0]["body"] == "once"
        assert [m["body"] for m in alice.all_messages(t)] == ["once", "second", "third"]
        for ws in (wa, wa2, wb):
            await ws.close()

    run(scenario())


def test_resume_after_disconnect_replays_missed_messages_in_order(server):
    async def scenario():
        alice = new_user(server, "res")
        bob = new_user(server, "resb")
        t = alice.create_thread("Resume")["id"]
        alice.add_member(t, bob.user["username"])

        # Bob uses the recommended algorithm (outbox + last_seq + resubscribe after welcome).
        bc = ChatClient(server.url, bob.token)
        await bc.connect()
        await bc.open_thread(t)
        wa = await connect(server, alice)
        await subscribe(wa, t, 0)

        for i in range(3):
            await wa.send({"type": "send", "thread": t, "client_id": new_client_id(), "body": f"m{i}"})
        await bc.wait_until(lambda: bc.last_seq.get(t) == 3)

        # Bob drops off. While away he writes a message (kept in his outbox) and alice writes 5.
        await bc.disconnect()
        cid = await bc.send(t, "written offline")
        assert cid in bc.outbox
        for i in range(3, 8):
            await wa.send({"type": "send", "thread": t, "client_id": new_client_id(), "body": f"m{i}"})
        await wa.wait_for(lambda f: f["type"] == "message" and f["seq"] == 8)

        # Back: subscribe with after_seq=3 and resend the outbox.
        await bc.connect()
        sub = bc.conn.of_type("subscribed")[0]
        assert sub["head_seq"] == 8, sub
        await bc.wait_until(lambda: cid in bc.persisted and bc.last_seq.get(t) == 9, timeout=15)
        assert bc.seqs(t) == list(range(1, 10))
        assert bc.bodies(t)[:8] == [f"m{i}" for i in range(8)]
        assert bc.bodies(t)[8] == "written offline"
        assert bc.outbox == {} and bc.gaps == [] and bc.duplicates == []
        # The replay itself came in order, starting right after 3.
        replayed = [m["seq"] for m in bc.conn.messages(t)]
        assert replayed == list(range(4, 10)), replayed

        # Live messages continue after the replay, exactly once.
        await wa.send({"type": "send", "thread": t, "client_id": new_client_id(), "body": "live"})
        await bc.wait_until(lambda: bc.last_seq.get(t) == 10)
        await asyncio.sleep(0.2)
        bc.pump()
        assert [m["seq"] for m in bc.conn.messages(t)] == list(range(4, 11)) and bc.duplicates == []

        # Resubscribing on the same connection restarts from the new after_seq.
        since = bc.conn.mark()
        await bc.conn.send({"type": "subscribe", "thread": t, "after_seq": 7})
        await bc.conn.wait_for(lambda f: f["type"] == "message" and f["seq"] == 10, since=since)
        await asyncio.sleep(0.2)
        assert [m["seq"] for m in bc.conn.messages(t, since)] == [8, 9, 10]
        # Without after_seq nothing is replayed; after_seq >= head replays nothing either.
        for after in (None, 10, 50):
            since = bc.conn.mark()
            await subscribe(bc.conn, t, after)
            await bc.conn.ping()
            assert bc.conn.messages(t, since) == [], after
        # unsubscribe stops the frames.
        since = bc.conn.mark()
        await bc.conn.send({"type": "unsubscribe", "thread": t})
        await bc.conn.wait_for(lambda f: f["type"] == "unsubscribed" and f["thread"] == t, since=since)
        alice.post_message(t, "not for bob's socket")
        await wa.wait_for(lambda f: f["type"] == "message" and f["seq"] == 11)
        await bc.conn.ping()
        await asyncio.sleep(0.2)
        assert [m["seq"] for m in bc.conn.messages(t, since)] == []

        await bc.disconnect()
        await wa.close()

    run(scenario())


# ---- malformed input -----------------------------------------------------------------------------


def test_bad_frames_get_error_frames_and_the_connection_stays_open(server):
    async def scenario():
        alice = new_user(server, "bad")
        t = alice.create_thread("Bad frames")["id"]
        ws = await connect(server, alice)

        async def expect_error(data, code: str, client_id: str | None = None):
            since = ws.mark()
            await ws.send_raw(data)
            f = await ws.wait_for(lambda f: f["type"] in ("error", "ack", "subscribed", "pong"), since=since)
            assert f["type"] == "error" and f["code"] == code, (data, f)
            assert isinstance(f.get("message"), str)
            if client_id is not None:
                assert f.get("client_id") == client_id, f
            return f

        await expect_error("this is not json", "invalid_json")
        await expect_error("[1,2,3]", "invalid_json")
        await expect_error('"x"', "invalid_json")
        await expect_error("3", "invalid_json")
        await expect_error('{"type":"ping"', "invalid_json")
        await expect_error(b'{"type":"ping"}', "invalid_json")  # binary frame
        await expect_error('{"type":"ping","nonce":' + "[" * 70 + "]" * 70 + "}", "invalid_json")
        await expect_error('{"type":"sned","thread":"x"}', "unknown_type")
        await expect_error("{}", "unknown_type")
        await expect_error('{"type":5}', "unknown_type")
        await expect_error('{"type":null}', "unknown_type")

        cid = new_client_id()
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": cid, "body": "   "}),
                           "validation", cid)
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": cid, "body": "x" * 16385}),
                           "validation", cid)
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": cid, "body": "a\u0000b"}),
                           "validation", cid)
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": cid}), "validation", cid)
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": "", "body": "hi"}), "validation")
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": "x" * 129, "body": "hi"}),
                           "validation")
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": "tab\there", "body": "hi"}),
                           "validation")
        await expect_error(json.dumps({"type": "send", "thread": t, "client_id": cid, "body": "hi",
                                       "agent": "no-such-agent"}), "not_found", cid)
        await expect_error(json.dumps({"type": "subscribe", "thread": t, "after_seq": -1}), "validation")
        await expect_error(json.dumps({"type": "subscribe", "thread": t, "after_seq": "3"}), "validation")
        await expect_error(json.dumps({"type": "subscribe"}), "validation")
        await expect_error(json.dumps({"type": "cancel", "stream_id": "no-such-stream"}), "not_found")
        m = await expect_error(json.dumps({"type": "send", "thread": t, "client_id": cid, "body": ""}),
                               "validation", cid)
        assert m["message"].startswith("body:"), m

        # A body of exactly 16 384 characters (code points, not bytes) is fine, and so is trimming.
        body = "😀" * 16384
        since = ws.mark()
        await ws.send({"type": "send", "thread": t, "client_id": cid, "body": f"  {body}  ", "extra": 1})
        ack = await ws.wait_for(lambda f: f["type"] in ("ack", "error"), since=since)
        assert ack["type"] == "ack" and ack["status"] == "persisted" and ack["seq"] == 1, ack
        assert alice.messages(t)[0]["body"] == body

        # Nothing above closed the connection: ping/pong still works, with any JSON nonce.
        assert (await ws.ping({"any": ["json", 1]}))["nonce"] == {"any": ["json", 1]}
        since = ws.mark()
        await ws.send({"type": "ping"})
        pong = await ws.wait_for("pong", since=since)
        assert "nonce" in pong and pong["nonce"] is None
        assert not ws.closed.is_set()
        assert ws.non_json == []

        # HTTP: JSON that is not an object, invalid JSON.
        for raw in (b"[1]", b"not json", b'"x"'):
            r = alice._http.post("/api/threads", content=raw, headers={
                "Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
        with pytest.raises(ApiError) as e:
            alice.create_thread("   ")
        assert_error(e.value, 422, "validation")
        assert "title" in e.value.fields
        with pytest.raises(ApiError) as e:
            alice.create_thread("x", agents=["zeus"])
        assert_error(e.value, 422, "validation")
        assert "agents" in e.value.fields
        await ws.close()

    run(scenario())


def test_a_frame_of_256_kib_is_accepted_and_a_larger_one_closes_with_1009(server):
    async def scenario():
        alice = new_user(server, "big")
        ws = await connect(server, alice)
        # Exactly 262 144 bytes: accepted (the pong echoes the nonce).
        head, tail = '{"type":"ping","nonce":"', '"}'
        frame = head + "a" * (MAX_FRAME_BYTES - len(head) - len(tail)) + tail
        assert len(frame.encode()) == MAX_FRAME_BYTES
        since = ws.mark()
        await ws.send_raw(frame)
        pong = await ws.wait_for("pong", since=since, timeout=15)
        assert len(pong["nonce"]) == MAX_FRAME_BYTES - len(head) - len(tail)

        # One byte more: close 1009.
        frame = head + "a" * (MAX_FRAME_BYTES - len(head) - len(tail) + 1) + tail
        try:
            await ws.send_raw(frame)
        except Exception:
            pass  # the server may close while we are still writing
        code, _ = await ws.wait_closed(timeout=10)
        assert code == CLOSE_TOO_BIG, f"close code {code}"

        # The server is fine and a new connection works.
        ws2 = await connect(server, alice)
        await ws2.ping()
        await ws2.close()

    run(scenario())


def test_fragmented_messages_count_as_a_whole_and_invalid_utf8_closes_with_1007(server):
    async def scenario():
        alice = new_user(server, "frag")
        ws = await connect(server, alice)
        # A message in three fragments under the limit: accepted.
        since = ws.mark()
        await ws.ws.send(['{"type":"ping",', '"nonce":"', "b" * 1000 + '"}'])
        assert (await ws.wait_for("pong", since=since))["nonce"] == "b" * 1000
        # Fragments that are small on their own but over 256 KiB together: 1009.
        part = "c" * (100 * 1024)
        try:
            await ws.ws.send(['{"type":"ping","nonce":"', part, part, part, '"}'])
        except Exception:
            pass
        code, _ = await ws.wait_closed(timeout=10)
        assert code == CLOSE_TOO_BIG, f"close code {code}"

        ws = await connect(server, alice)
        try:
            await ws.ws.send(b'{"type":"ping","nonce":"\xff\xfe"}', text=True)
        except Exception:
            pass
        code, _ = await ws.wait_closed(timeout=10)
        assert code == 1007, f"close code {code}"

    run(scenario())


def test_agent_answers_are_streamed_to_every_subscriber_and_stored(server):
    async def scenario():
        alice = new_user(server, "agt")
        bob = new_user(server, "agtb")
        agents = alice.agents()
        assert agents and all(set(a) >= {"id", "name", "provider", "model"} for a in agents), agents
        assert all(k not in json.dumps(agents).lower() for k in ("api_key", "secret"))
        agent = agents[0]
        t = alice.create_thread("With an agent", agents=[agent["id"], agent["id"]])
        assert t["agents"] == [agent["id"]]  # duplicates removed
        t = t["id"]
        alice.add_member(t, bob.user["username"])
        wa = await connect(server, alice)
        wb = await connect(server, bob)
        await subscribe(wa, t, 0)
        await subscribe(wb, t, 0)

        cid = new_client_id()
        await wa.send({"type": "send", "thread": t, "client_id": cid, "body": "Hello agent", "agent": agent["id"]})
        ack = await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid)
        assert ack["seq"] == 1
        answers = []
        for ws in (wa, wb):
            end = await ws.wait_for(lambda f: f["type"] in ("stream_end", "stream_error"), timeout=60)
            assert end["type"] == "stream_end", end
            sid = end["stream_id"]
            start = [f for f in ws.frames if f["type"] == "stream_start" and f["stream_id"] == sid]
            assert len(start) == 1 and start[0]["agent"] == {
                "id": agent["id"], "name": agent["name"], "model": agent["model"]}  # the model that answers
            assert start[0]["thread"] == t
            text, n = "", 0
            for f in ws.frames:
                if f["type"] == "stream_chunk" and f["stream_id"] == sid:
                    assert f["offset"] == n, (f["offset"], n)  # in order, nothing missing or repeated
                    text += f["delta"]
                    n += len(f["delta"])  # Python str length = code points
            m = end["message"]
            assert m["body"] == text and m["seq"] == 2
            assert m["author"] == {"kind": "agent", "id": agent["id"], "name": agent["name"]}
            assert "status" not in m or m["status"] is None
            stored = await ws.wait_for(lambda f: f["type"] == "message" and f["seq"] == 2)
            assert stored["id"] == m["id"] and stored["body"] == text
            answers.append(m["id"])
        assert answers[0] == answers[1]

        # Repeating the send does not start a second answer.
        since = wa.mark()
        await wa.send({"type": "send", "thread": t, "client_id": cid, "body": "Hello agent", "agent": agent["id"]})
        await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid, since=since)
        await asyncio.sleep(1.0)
        assert not [f for f in wa.frames[since:] if f["type"].startswith("stream_")]
        assert alice.thread(t)["last_seq"] == 2
        # Any known agent may be asked, even one not attached to the thread (over HTTP here).
        other = agents[-1]["id"]
        status, _ = alice.post_message(t, "and you?", agent=other)
        assert status == 201
        end = await wb.wait_for(lambda f: f["type"] == "stream_end" and f["message"]["seq"] == 4, timeout=60)
        assert end["message"]["author"]["id"] == other
        with pytest.raises(ApiError) as e:
            alice.post_message(t, "hi", agent="no-such-agent")
        assert_error(e.value, 422, "validation")
        assert "agent" in e.value.fields
        await wa.close()
        await wb.close()

    run(scenario())


def test_debate_turns_and_cancel(server):
    async def scenario():
        alice = new_user(server, "deb")
        bob = new_user(server, "debb")
        ids = [a["id"] for a in alice.agents()]
        t = alice.create_thread("Debate")["id"]
        alice.add_member(t, bob.user["username"])
        wa = await connect(server, alice)
        wb = await connect(server, bob)
        await subscribe(wa, t, 0)
        await subscribe(wb, t, 0)

        # Two agents, two rounds: the topic (seq 1), then four turns in order.
        order = [ids[0], ids[-1]] * 2
        cid = new_client_id()
        frame = {"type": "debate", "thread": t, "client_id": cid, "topic": "  Ship on Monday?  ",
                 "agents": order[:2], "rounds": 2}
        await wa.send(frame)
        ack = await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid)
        assert ack["status"] == "persisted" and ack["seq"] == 1
        await wb.wait_for(lambda f: f["type"] == "message" and f["seq"] == 5, timeout=90)
        msgs = wb.messages(t)
        assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
        assert msgs[0]["body"] == "Ship on Monday?" and msgs[0]["author"]["id"] == alice.user["id"]
        assert [m["author"]["id"] for m in msgs[1:]] == order
        assert all(m["author"]["kind"] == "agent" for m in msgs[1:])
        starts = [f["agent"]["id"] for f in wb.of_type("stream_start")]
        assert starts == order, starts
        # The same debate frame again: acknowledged with the original seq, no second debate.
        since = wa.mark()
        await wa.send(frame)
        again = await wa.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == cid, since=since)
        assert again["seq"] == 1
        await asyncio.sleep(1.0)
        assert not [f for f in wa.frames[since:] if f["type"] == "stream_start"]
        assert alice.thread(t)["last_seq"] == 5
        # Constraints.
        since = wa.mark()
        await wa.send({**frame, "client_id": new_client_id(), "agents": [ids[0]]})
        err = await wa.wait_for("error", since=since)
        assert err["code"] == "validation" and err["message"].startswith("agents:")
        with pytest.raises(ApiError) as e:
            alice.call("POST", f"/api/threads/{t}/debate", {"client_id": new_client_id(), "topic": "x",
                                                          "agents": order[:2], "rounds": 11})
        assert_error(e.value, 422, "validation")
        assert "rounds" in e.value.fields

        # Any member may cancel a running stream: stream_error "cancelled" for every subscriber.
        since_a, since_b = wa.mark(), wb.mark()
        status, _ = alice.post_message(t, "Tell me a long story.", agent=ids[0])
        assert status == 201
        start = await wb.wait_for("stream_start", since=since_b, timeout=30)
        sid = start["stream_id"]
        await wb.send({"type": "cancel", "stream_id": sid})
        end = await wa.wait_for(lambda f: f["type"] in ("stream_end", "stream_error") and f["stream_id"] == sid,
                                since=since_a, timeout=30)
        if end["type"] == "stream_error":
            assert end["code"] == "cancelled" and isinstance(end["message"], str), end
            other = await wb.wait_for(lambda f: f["type"] == "stream_error" and f["stream_id"] == sid,
                                      since=since_b)
            assert other["code"] == "cancelled"
            partial = "".join(f["delta"] for f in wa.frames[since_a:]
                              if f["type"] == "stream_chunk" and f["stream_id"] == sid)
            if partial:
                m = await wa.wait_for(lambda f: f["type"] == "message" and f["seq"] == 7, since=since_a)
                assert m["status"] == "incomplete" and m["body"].startswith(partial.strip()[:20]), m
        else:
            # It finished before the cancel arrived: then the cancel is about an unknown stream.
            err = await wb.wait_for("error", since=since_b)
            assert err["code"] == "not_found"
        # Cancelling something that does not exist (or has finished): not_found.
        since = wb.mark()
        await wb.send({"type": "cancel", "stream_id": sid})
        err = await wb.wait_for(lambda f: f["type"] in ("error", "stream_error"), since=since)
        assert err["type"] == "error" and err["code"] == "not_found"
        await wa.close()
        await wb.close()

    run(scenario(), timeout=150)


# ---- shutdown ------------------------------------------------------------------------------------


def test_sigterm_drains_and_closes_websockets_with_1012():
    srv = Server("drain")
    srv.start()
    try:
        alice = new_user(srv, "drain")
        bob = new_user(srv, "drainb")
        t = alice.create_thread("Drain")["id"]
        alice.add_member(t, bob.user["username"])

        async def scenario():
            wa = await connect(srv, alice)
            wb = await connect(srv, bob, via="query")
            await subscribe(wa, t, 0)
            await subscribe(wb, t, 0)
            cid = new_client_id()
            await wa.send({"type": "send", "thread": t, "client_id": cid, "body": "before the restart"})
            await wb.wait_for(lambda f: f["type"] == "message" and f["client_id"] == cid)

            srv.sigterm()
            for ws in (wa, wb):
                code, _ = await ws.wait_closed(timeout=30)
                assert code == CLOSE_SERVICE_RESTART, f"close code {code}"

            # While draining (if we are quick enough to see it), upgrades are refused with 503.
            try:
                c = await Connection.open(srv.url, alice.token, timeout=3)
                await c.close()
                raise AssertionError("an upgrade was accepted during the drain")
            except UpgradeRefused as e:
                assert e.status == 503
                assert json.loads(e.body)["error"]["code"] == "unavailable"
            except AssertionError:
                raise
            except Exception:
                pass  # already gone (connection refused or reset)

        run(scenario(), timeout=60)
        assert srv.proc.wait(30) == 0, srv.log_tail()
        # After a restart on the same database the stored message is there and the old tokens
        # still work (a token is valid until it expires or is logged out).
        srv.proc = None
        srv.start()
        assert [m["body"] for m in bob.all_messages(t)] == ["before the restart"]
        assert alice.me() == alice.user
    finally:
        srv.dispose()


def test_health_endpoints(server):
    r = httpx.get(f"{server.url}/healthz", trust_env=False)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(f"{server.url}/readyz", trust_env=False)
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert r.json()["db"] == "up" and r.json()["broker"] in ("local", "up")


# ---- the OpenAPI document ------------------------------------------------------------------------


def closed(doc: dict) -> dict:
    """A copy of the document in which no object schema allows an undocumented property.

    ``unevaluatedProperties: false`` goes on every object schema, except directly inside an
    ``allOf`` (where each part sees only its own properties): there it goes on the ``allOf``'s
    owner instead, and a component used as such a part is closed where it is validated alone.
    """
    doc = copy.deepcopy(doc)
    parts: set[str] = set()

    def find_parts(node: Any) -> None:
        if isinstance(node, dict):
            for sub in node.get("allOf", []):
                parts.add(sub.get("$ref", "").rsplit("/", 1)[-1])
            for v in node.values():
                find_parts(v)
        elif isinstance(node, list):
            for v in node:
                find_parts(v)

    def close(node: Any, part: bool = False) -> None:
        if isinstance(node, dict):
            if not part and ("properties" in node or "allOf" in node):
                node.setdefault("unevaluatedProperties", False)
            for key, v in node.items():
                if key == "allOf":
                    for sub in v:
                        close(sub, part=True)
                elif key == "properties":
                    for prop in v.values():
                        close(prop)
                else:
                    close(v)
        elif isinstance(node, list):
            for v in node:
                close(v)

    find_parts(doc)
    for name, schema in doc["components"]["schemas"].items():
        close(schema, part=name in parts)
    return doc


class Described:
    """Checks answers and frames against the server's own OpenAPI document (closed: a field the
    document does not name fails too)."""

    def __init__(self, doc: dict):
        self.doc = closed(doc)
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:emergence:openapi", resource)
        self.checked: set[tuple[str, str, int]] = set()

    def validate(self, schema: dict, instance: Any) -> None:
        schema = {**schema, "unevaluatedProperties": False} if "$ref" in schema else schema
        OAS31Validator(schema, registry=self.registry).validate(instance)

    def component(self, name: str) -> dict:
        return {"$ref": f"urn:emergence:openapi#/components/schemas/{name}"}

    def answer(self, method: str, template: str, resp: httpx.Response) -> None:
        """The answer's status is documented for that operation, and its JSON body fits."""
        op = self.doc["paths"][template][method.lower()]
        documented = op["responses"].get(str(resp.status_code))
        assert documented, f"{method} {template}: {resp.status_code} is not documented: {resp.text}"
        if "$ref" in documented:
            documented = self.doc["components"]["responses"][documented["$ref"].rsplit("/", 1)[-1]]
        media = documented.get("content", {}).get("application/json")
        if media is None:
            assert not resp.content or not resp.headers.get("content-type", "").startswith(
                "application/json"), f"{method} {template} {resp.status_code}: undocumented body"
        else:
            schema = media["schema"]
            if "$ref" in schema:
                schema = {"$ref": "urn:emergence:openapi" + schema["$ref"]}
            self.validate(schema, resp.json())
        self.checked.add((method.upper(), template, resp.status_code))


def test_the_openapi_document_is_valid_and_describes_what_the_server_answers(server):
    r = httpx.get(f"{server.url}/api/openapi.json", trust_env=False)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"].startswith("3.1."), doc["openapi"]
    validate_openapi(doc)  # a real OpenAPI 3.1 validator; raises on the first problem
    d = Described(doc)

    def call(method: str, template: str, path: str, body: Any = None, token: str | None = None,
             raw: bytes | None = None, content_type: str = "application/json") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if content is not None:
            headers["Content-Type"] = content_type
        resp = httpx.request(method, f"{server.url}{path}", content=content, headers=headers,
                             trust_env=False, timeout=15)
        d.answer(method, template, resp)
        return resp

    call("GET", "/healthz", "/healthz")
    call("GET", "/readyz", "/readyz")
    assert call("GET", "/metrics", "/metrics").status_code == 200
    name, password = uname("Oas"), PASSWORD
    # Bodies as the document's request schemas describe them.
    account = {"username": name, "password": password}
    d.validate(d.component("NewAccount"), account)
    token = call("POST", "/api/auth/register", "/api/auth/register", account).json()["token"]
    assert call("POST", "/api/auth/register", "/api/auth/register", account).status_code == 409
    assert call("POST", "/api/auth/register", "/api/auth/register", {"username": "x!"}).status_code == 422
    assert call("POST", "/api/auth/login", "/api/auth/login", account).status_code == 200
    assert call("POST", "/api/auth/login", "/api/auth/login",
                {"username": name, "password": "wrong password"}).status_code == 401
    call("GET", "/api/me", "/api/me", token=token)
    assert call("GET", "/api/me", "/api/me").status_code == 401
    agents = call("GET", "/api/agents", "/api/agents", token=token).json()["agents"]
    new_thread = {"title": "described", "agents": [agents[0]["id"]]}
    d.validate(d.component("NewThread"), new_thread)
    t = call("POST", "/api/threads", "/api/threads", new_thread, token).json()["id"]
    assert call("POST", "/api/threads", "/api/threads", raw=b"{", token=token).status_code == 400
    assert call("POST", "/api/threads", "/api/threads", raw=b"title=x", token=token,
                content_type="application/x-www-form-urlencoded").status_code == 415
    assert call("POST", "/api/threads", "/api/threads", {"title": " "}, token).status_code == 422
    call("GET", "/api/threads", "/api/threads", token=token)
    call("GET", "/api/threads/{id}", f"/api/threads/{t}", token=token)
    assert call("GET", "/api/threads/{id}", "/api/threads/no-such-thread", token=token).status_code == 404
    other = Api(server.url)
    other.register(uname("OasB"), PASSWORD)
    assert call("POST", "/api/threads/{id}/members", f"/api/threads/{t}/members",
                {"username": other.user["username"]}, token).status_code == 204
    messages = f"/api/threads/{t}/messages"
    post = {"client_id": new_client_id(), "body": "described"}
    d.validate(d.component("PostMessage"), post)
    assert call("POST", "/api/threads/{id}/messages", messages, post, token).status_code == 201
    assert call("POST", "/api/threads/{id}/messages", messages, post, token).status_code == 200
    assert call("POST", "/api/threads/{id}/messages", messages, post, other.token).status_code == 409
    call("GET", "/api/threads/{id}/messages", messages + "?after_seq=0", token=token)
    assert call("GET", "/api/threads/{id}/messages", messages + "?limit=0", token=token).status_code == 422
    debate = {"client_id": new_client_id(), "topic": "described?", "rounds": 1,
              "agents": [a["id"] for a in agents[:2]]}
    d.validate(d.component("NewDebate"), debate)
    assert call("POST", "/api/threads/{id}/debate", f"/api/threads/{t}/debate", debate,
                token).status_code == 202
    call("GET", "/api/openapi.json", "/api/openapi.json")
    assert call("POST", "/api/auth/logout", "/api/auth/logout", token=other.token).status_code == 204
    other.close()
    # The document's responses were really exercised, errors included.
    assert {s for (_, _, s) in d.checked} >= {200, 201, 202, 204, 400, 401, 404, 409, 415, 422}

    # WebSocket frames, both ways, against ServerFrame and ClientFrameShape.
    async def frames() -> None:
        api = Api(server.url)
        api.register(uname("OasW"), PASSWORD)
        c = await connect(server, api)
        thread = api.create_thread("frames", [agents[0]["id"]])["id"]
        sent = [
            {"type": "subscribe", "thread": thread, "after_seq": 0},
            {"type": "ping", "nonce": 7},
            {"type": "send", "thread": thread, "client_id": new_client_id(), "body": "hi",
             "agent": agents[0]["id"]},
            {"type": "subscribe", "thread": "no-such-thread"},
        ]
        for f in sent:
            d.validate(d.component("ClientFrameShape"), f)
            await c.send(f)
        await c.wait_for(lambda f: f["type"] == "stream_end", timeout=60)
        await c.wait_for(lambda f: f["type"] == "message" and f["author"]["kind"] == "agent")
        await c.wait_for(lambda f: f["type"] == "error" and f["code"] == "not_found")
        seen = {f["type"] for f in c.frames}
        assert seen >= {"welcome", "subscribed", "pong", "ack", "message", "stream_start",
                        "stream_end", "error"}, seen
        for f in c.frames:
            d.validate(d.component("ServerFrame"), f)
        await c.close()
        api.close()

    run(frames())
