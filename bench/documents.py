"""Documents (``bench/run documents``; not in ``all``): indexing throughput and retrieval latency
with 10,000 documents, on SQLite, with full text alone and with a real embeddings model.

Indexing: PDFs of 5 pages (made here, one paragraph per page) are uploaded through the API to one
thread; the time from the first upload to the last document ``indexed`` gives pages/s of full-text
indexing (the bounded extraction child, chunking, FTS5); the time until every chunk has its
vector (``document_chunks_embedded_total``) gives pages/s with embeddings.

Retrieval: 10,000 one-passage documents (20-60 words drawn like bench/search.py's messages, so
query words span every frequency) are seeded straight into one thread's tables, with their
vectors computed by the model, the server stopped meanwhile; then ``GET
/api/threads/{id}/documents/search`` is timed for two-word questions, sequentially, after a
warm-up: once with full text alone, once hybrid (full text + the question's embedding + an exact
cosine scan of the thread's 10,000 vectors, fused by RRF). One thread holding all 10,000
documents is the worst case of the cosine scan.

The model is all-MiniLM-L6-v2 (384 dimensions, int8 ONNX on onnxruntime, two threads) served on
loopback by tests/embedder/serve.py from the environment scripts/embedder-venv installs; its own
time is part of the figures (the question's embedding is on the retrieval path).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import search  # noqa: E402 (bench/search.py: the corpus and helpers)

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "all-minilm-l6-v2"
IDENTITY = f"openai:{MODEL_ID}"


def log(msg: str) -> None:
    search.log(msg)


def model_server() -> tuple[subprocess.Popen, str]:
    py = subprocess.run([str(ROOT / "scripts" / "embedder-venv")], capture_output=True, text=True,
                        check=True).stdout.strip()
    proc = subprocess.Popen([py, str(ROOT / "tests" / "embedder" / "serve.py"), "0"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "EMBEDDER_THREADS": "2"})
    line = proc.stdout.readline()
    port = int(line.split()[1])
    return proc, f"http://127.0.0.1:{port}"


def embed(url: str, texts: list[str]) -> list[bytes]:
    import array
    out = []
    for i in range(0, len(texts), 64):
        req = urllib.request.Request(url + "/v1/embeddings", method="POST",
                                     data=json.dumps({"model": MODEL_ID, "input": texts[i:i + 64]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            data = json.loads(r.read())["data"]
        for d in sorted(data, key=lambda d: d["index"]):
            out.append(array.array("f", d["embedding"]).tobytes())  # little-endian on x86_64
    return out


def pdf(pages: list[str]) -> bytes:
    """A PDF whose page i shows the text pages[i] (Helvetica, wrapped at 90 characters)."""
    objs: list[bytes] = []
    n = len(pages)
    # 1 catalog, 2 pages, 3 font, then page i: 4 + 2i, its content 5 + 2i.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} /MediaBox [0 0 595 842] >>".encode())
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, text in enumerate(pages):
        words, lines, line = text.split(), [], ""
        for w in words:
            if len(line) + len(w) > 90:
                lines.append(line)
                line = ""
            line += (" " if line else "") + w
        lines.append(line)
        ops = "BT /F1 11 Tf 14 TL 50 780 Td " + " ".join(
            "(" + ln.replace("\\", "").replace("(", "").replace(")", "") + ") Tj T*" for ln in lines) + " ET"
        stream = ops.encode("latin-1", "replace")
        objs.append(f"<< /Type /Page /Parent 2 0 R /Contents {5 + 2 * i} 0 R "
                    f"/Resources << /Font << /F1 3 0 R >> >> >>".encode())
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.5\n")
    offsets = []
    for k, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % k + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def upload(url: str, token: str, thread: str, name: str, data: bytes) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/pdf\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}/api/threads/{thread}/documents", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                          "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["id"]


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def account(url: str) -> tuple[str, str, str]:
    _, r = search.http("POST", url + "/api/auth/register", {"username": "bench", "password": "benchpass-123"})
    token = r["token"]
    _, me = search.http("GET", url + "/api/me", token=token)
    _, t = search.http("POST", url + "/api/threads", {"title": "documents"}, token=token)
    return me["id"], token, t["id"]


def embeddings_env(model_url: str) -> dict:
    return {"EMERGENCE_EMBEDDINGS_PROVIDER": "openai", "EMERGENCE_EMBEDDINGS_BASE_URL": model_url,
            "EMERGENCE_EMBEDDINGS_MODEL": MODEL_ID}


def indexing(bench, model_url: str, docs: int, pages: int) -> dict:
    corpus = search.Corpus(seed=3)
    files = [pdf([corpus.body(True) for _ in range(pages)]) for _ in range(docs)]
    server = bench.emergence(extra_env=embeddings_env(model_url)).start()
    try:
        _, token, thread = account(server.url)
        t0 = time.monotonic()
        for i, f in enumerate(files):
            upload(server.url, token, thread, f"doc{i:04d}.pdf", f)
        uploaded = time.monotonic() - t0
        while True:
            _, listing = search.http("GET", f"{server.url}/api/threads/{thread}/documents", token=token)
            states = [d["status"] for d in listing["documents"]]
            if all(s != "processing" for s in states):
                break
            time.sleep(0.05)
        indexed = time.monotonic() - t0
        failed = sum(s == "failed" for s in states)
        chunks = sum(d.get("chunks") or 0 for d in listing["documents"])
        while metric(server.url, "document_chunks_embedded_total") < chunks:
            time.sleep(0.1)
        embedded = time.monotonic() - t0
    finally:
        server.stop()
    total = docs * pages
    return {"documents": docs, "pages": total, "chunks": chunks, "failed": failed,
            "upload_seconds": round(uploaded, 2), "indexed_seconds": round(indexed, 2),
            "pages_per_sec": round(total / indexed, 1), "embedded_seconds": round(embedded, 2),
            "pages_per_sec_with_embeddings": round(total / embedded, 1)}


def seed_texts(n: int) -> list[str]:
    corpus = search.Corpus(seed=5)
    return [corpus.body(True) for _ in range(n)]


def seed_vectors(model_url: str, texts: list[str]) -> list[bytes]:
    """The model's vectors of the seeded texts, kept in bench/results/tmp between runs (the
    texts are the same for the same count: the corpus is seeded)."""
    cache = ROOT / "bench" / "results" / "tmp" / f"documents-vectors-{len(texts)}.bin"
    size = 384 * 4
    if cache.exists() and cache.stat().st_size == size * len(texts):
        data = cache.read_bytes()
        return [data[i * size:(i + 1) * size] for i in range(len(texts))]
    vectors = embed(model_url, texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"".join(vectors))
    return vectors


def seed(path: Path, model_url: str, uid: str, thread: str, n: int) -> dict:
    texts = seed_texts(n)
    t0 = time.monotonic()
    vectors = seed_vectors(model_url, texts)
    embed_s = time.monotonic() - t0
    now = int(time.time() * 1000)
    db = sqlite3.connect(path)
    with db:
        for i, (text, vec) in enumerate(zip(texts, vectors)):
            doc = str(uuid.uuid4())
            db.execute("INSERT INTO documents (id, thread_id, uploader_id, name, kind, mime, size, status, "
                       "stage, pages, chunks, created_at, updated_at) VALUES (?, ?, ?, ?, 'txt', 'text/plain', "
                       "?, 'indexed', 'indexed', NULL, 1, ?, ?)",
                       (doc, thread, uid, f"seed{i:05d}.txt", len(text), now, now))
            db.execute("INSERT INTO document_chunks (document_id, thread_id, ord, page, heading, text, "
                       "embedding, embedding_model) VALUES (?, ?, 0, NULL, NULL, ?, ?, ?)",
                       (doc, thread, text, vec, IDENTITY))
    db.close()
    return {"documents": n, "seed_embed_seconds": round(embed_s, 1), "texts": texts}


def measure(url: str, token: str, thread: str, questions: list[str], warmup: int = 20) -> dict:
    lat = []
    for i, q in enumerate(questions):
        qs = urllib.parse.urlencode({"q": q, "limit": 5})
        t0 = time.perf_counter()
        status, r = search.http("GET", f"{url}/api/threads/{thread}/documents/search?{qs}", token=token)
        ms = (time.perf_counter() - t0) * 1000
        assert status == 200, (status, r)
        if i >= warmup:
            lat.append(ms)
    return search.percentiles(lat)


def retrieval(bench, model_url: str, n: int, n_queries: int) -> dict:
    first = bench.emergence().start()
    try:
        path = Path(first.cwd) / "emergence.db"
        uid, token, thread = account(first.url)
        os.killpg(first.proc.pid, signal.SIGTERM)
        first.proc.wait(timeout=30)
        log(f"documents: seeding {n:,} documents with their vectors")
        seeded = seed(path, model_url, uid, thread, n)
        texts = seeded.pop("texts")
        rng = random.Random(11)
        questions = []
        for _ in range(n_queries):
            words = rng.choice(texts).rstrip(".").split()
            k = rng.randrange(len(words) - 1)
            questions.append(f"{words[k]} {words[k + 1]}")
        out = {**seeded, "questions": n_queries}
        for label, env in (("full_text", {}), ("hybrid", embeddings_env(model_url))):
            env = {**env, "DATABASE_URL": f"sqlite://{path}"}
            server = bench.emergence(extra_env=env).start(timeout=120)
            try:
                out[label] = measure(server.url, token, thread, questions)
                a = out[label]
                log(f"documents retrieval {label} ({n:,} documents in one thread): p50 {a['p50_ms']} ms, "
                    f"p95 {a['p95_ms']} ms, p99 {a['p99_ms']} ms")
            finally:
                server.stop()
        return out
    finally:
        first.stop()


def scenario(bench) -> dict:
    docs, pages = (20, 5) if bench.quick else (100, 5)
    n, n_queries = (2_000, 80) if bench.quick else (10_000, 220)
    proc, model_url = model_server()
    try:
        out = {"model": "all-MiniLM-L6-v2 int8 ONNX (onnxruntime, 2 threads) on loopback",
               "load_average_before": os.getloadavg()}
        log(f"documents: indexing {docs} PDFs of {pages} pages")
        out["indexing"] = indexing(bench, model_url, docs, pages)
        i = out["indexing"]
        log(f"documents indexing: {i['pages_per_sec']} pages/s full text, "
            f"{i['pages_per_sec_with_embeddings']} pages/s with embeddings")
        out["retrieval"] = retrieval(bench, model_url, n, n_queries)
        return out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
