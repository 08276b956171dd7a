"""Search at scale (``bench/run search``): 1,000,000 messages across 10,000 threads on SQLite and on
PostgreSQL, then the latency of ``GET /api/search`` for a mix of queries, as two kinds of users.

The corpus is seeded straight into each database after the server has created its schema (the
server is stopped meanwhile), with the rows the server itself would write: threads, members,
messages with gapless ``seq`` over a year of history; the databases index them as they would the
server's (SQLite's triggers, PostgreSQL's generated column). Bodies are drawn with a Zipf law from a vocabulary of ~3,000 English words taken from
this repository's docs, ~500 French words from the web UI's catalogue and a list below, and
~6,000 rarer made-up tokens (names, identifiers), so query words span every frequency.

Queries (sequential, one client, after a warm-up): common words (the 50 most frequent), middle
words, rare words, two-word queries, French inflected forms, and a one-thread filter; asked by a
member of 300 threads ("typical") and by a member of all 10,000 ("everything"). Reported: p50,
p95, p99 per backend and user, and per query class. Target (issue 17): p95 <= 50 ms.
Standard library only.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FRENCH = """le la les un une des du de et ou mais donc car ni que qui quoi dont où je tu il elle nous vous
ils elles mon ton son notre votre leur ce cette ces avec sans pour par dans sur sous entre vers chez
être avoir faire dire pouvoir aller voir savoir vouloir venir devoir prendre trouver donner parler
aimer passer mettre demander rester penser regarder répondre manger mangeait mangeons mangé mangent
chercher cherchait cherchons trouvait trouvons écrire écrivait lisait lire comprendre comprenait
apprendre apprenait travail travailler travaillait travaillons maison voiture ville pays monde temps
jour année semaine mois heure matin soir nuit enfant enfants homme femme ami amie amis famille élève
élèves école professeur livre livres lettre question questions réponse réponses problème problèmes
solution solutions idée idées projet projets équipe réunion document documents fichier fichiers
recherche serveur base données message messages conversation débat débats agent agents modèle
modèles réseau sécurité connexion utilisateur utilisateurs compte comptes mot passe budget coût
rapide lent grand petit nouveau vieux beau bon mauvais meilleur premier dernier seul même autre
important possible nécessaire difficile facile vrai faux simple clair toujours jamais souvent
aujourd'hui hier demain ici maintenant encore déjà bientôt ensuite enfin pourquoi comment combien
""".split()


def vocabulary(rng: random.Random) -> tuple[list[str], list[str]]:
    """(every word, in Zipf rank order; the French words among them)."""
    english: set[str] = set()
    for md in sorted((ROOT / "docs").glob("*.md")):
        english.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", md.read_text(errors="ignore")))
    french = set(FRENCH)
    fr_part = (ROOT / "web" / "src" / "i18n" / "fr.ts").read_text()
    french.update(w.lower() for w in re.findall(r"[a-zàâçéèêëîïôûùüÿœ]{4,}", fr_part))
    made_up = {"".join(rng.choice("bcdfghjklmnprstvz") + rng.choice("aeiou") for _ in range(3))
               + str(rng.randrange(10, 99)) for _ in range(6000)}
    words = sorted(english) + sorted(french - english)
    rng.shuffle(words)
    words += sorted(made_up)  # the made-up tokens are the long tail
    return words, sorted(french)


class Corpus:
    """Deterministic bodies and query sets drawn from the vocabulary."""

    def __init__(self, seed: int = 17):
        self.rng = random.Random(seed)
        self.words, self.french = vocabulary(self.rng)
        n = len(self.words)
        weights = [1.0 / (r + 1) ** 1.07 for r in range(n)]
        total = sum(weights)
        self.cum = list(itertools.accumulate(w / total for w in weights))

    def body(self, agent: bool) -> str:
        k = self.rng.randint(20, 60) if agent else self.rng.randint(5, 25)
        ws = self.rng.choices(self.words, cum_weights=self.cum, k=k)
        if self.rng.random() < 0.3:  # some French sentences
            ws[: k // 2] = self.rng.choices(self.french, k=k // 2)
        return " ".join(ws).capitalize() + "."

    def queries(self, n: int, threads: list[str]) -> list[tuple[str, dict]]:
        rng = random.Random(99)
        common, middle, rare = self.words[:50], self.words[200:3000], self.words[-6000:]
        out = []
        for i in range(n):
            kind = ["common", "middle", "rare", "two words", "french", "one thread"][i % 6]
            if kind == "common":
                q = {"q": rng.choice(common)}
            elif kind == "middle":
                q = {"q": rng.choice(middle)}
            elif kind == "rare":
                q = {"q": rng.choice(rare)}
            elif kind == "two words":
                q = {"q": f"{rng.choice(middle)} {rng.choice(common + middle)}"}
            elif kind == "french":
                q = {"q": rng.choice(["mangeait", "cherchons", "travaillait", "élèves", "réponses",
                                      "problèmes", "conversation", "documents", "trouvait", "écrivait"])}
            else:
                q = {"q": rng.choice(common + middle), "thread": rng.choice(threads)}
            out.append((kind, q))
        return out


def http(method: str, url: str, body=None, token: str | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def users_via_api(url: str, n: int) -> list[tuple[str, str]]:
    """Register `n` users through the server; (id, token) each."""
    out = []
    for i in range(n):
        _, r = http("POST", url + "/api/auth/register", {"username": f"u{i:03d}", "password": "benchpass-123"})
        _, me = http("GET", url + "/api/me", token=r["token"])
        out.append((me["id"], r["token"]))
    return out


def plan(corpus: Corpus, user_ids: list[str], threads: int, messages: int):
    """Threads (id, owner, members) and the message rows, in the order they are written."""
    rng = corpus.rng
    everything = user_ids[0]
    others = user_ids[1:]
    t_rows = []
    # A year of history: threads start at random times, their messages follow minutes to hours
    # apart, so threads interleave in time as real ones do.
    now = int(time.time() * 1000)
    year = 365 * 24 * 3600 * 1000
    for t in range(threads):
        owner = others[t % len(others)]
        members = {everything, owner, *rng.sample(others, 2)}
        t_rows.append((str(uuid.uuid4()), f"Thread {t}", owner, sorted(members)))
    starts = sorted(now - year + rng.randrange(year) for _ in range(threads))
    per = messages // threads

    def rows():
        for (tid, _, owner, members), ts in zip(t_rows, starts):
            for seq in range(1, per + 1):
                ts += rng.randint(10_000, 3_600_000)
                agent = rng.random() < 0.35
                author_kind, author = ("agent", rng.choice(["claude", "gpt", "mistral"])) if agent \
                    else ("user", rng.choice(members))
                yield (str(uuid.uuid4()), tid, seq, f"c{seq}", author_kind, author,
                       author if agent else "u", corpus.body(agent), ts,
                       "complete" if agent else None)
    return t_rows, per, rows, starts[0]


def seed_sqlite(path: Path, corpus: Corpus, user_ids, threads: int, messages: int) -> dict:
    t_rows, per, rows, now = plan(corpus, user_ids, threads, messages)
    started = time.monotonic()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    with db:
        # In creation order: the server numbers threads as they come (migration 0008's trigger).
        db.executemany("INSERT INTO threads (id, title, owner_id, agents, created_at, last_seq, last_activity) "
                       "VALUES (?, ?, ?, '[]', ?, ?, ?)", [(t, ti, o, now, per, now) for t, ti, o, _ in t_rows])
        db.executemany("INSERT INTO thread_members (thread_id, user_id, added_at) VALUES (?, ?, ?)",
                       [(t, m, now) for t, _, _, ms in t_rows for m in ms])
    batch = []

    def flush():
        with db:
            db.executemany("INSERT INTO messages (id, thread_id, seq, client_id, author_kind, author_id, "
                           "author_name, body, created_at, status) VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
        batch.clear()
    for r in rows():
        batch.append(r)
        if len(batch) == 20000:
            flush()
    flush()
    with db:
        db.execute("INSERT INTO message_search(message_search) VALUES('optimize')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {"seed_seconds": round(time.monotonic() - started, 1),
            "database_mib": round(path.stat().st_size / 2**20, 1), "threads": [(t[0], t[3]) for t in t_rows]}


def seed_postgres(url: str, corpus: Corpus, user_ids, threads: int, messages: int) -> dict:
    t_rows, per, rows, now = plan(corpus, user_ids, threads, messages)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="search-seed-"))

    def esc(v):
        if v is None:
            return r"\N"
        return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    def tsv(name, it):
        p = tmp / name
        with open(p, "w") as f:
            for r in it:
                f.write("\t".join(esc(v) for v in r) + "\n")
        return p
    tp = tsv("threads.tsv", ((t, ti, o, "[]", now, per, now) for t, ti, o, _ in t_rows))
    mp = tsv("members.tsv", ((t, m, now) for t, _, _, ms in t_rows for m in ms))
    gp = tsv("messages.tsv", rows())
    script = (
        f"\\copy threads (id, title, owner_id, agents, created_at, last_seq, last_activity) FROM '{tp}'\n"
        f"\\copy thread_members (thread_id, user_id, added_at) FROM '{mp}'\n"
        "DROP INDEX messages_search;\n"
        f"\\copy messages (id, thread_id, seq, client_id, author_kind, author_id, author_name, body, created_at, status) FROM '{gp}'\n"
        "CREATE INDEX messages_search ON messages USING GIN (search);\n"
        "VACUUM ANALYZE;\n")
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url], input=script, text=True, check=True,
                   capture_output=True)
    size = subprocess.run(["psql", "-qtA", url, "-c", "SELECT pg_database_size(current_database())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for p in (tp, mp, gp):
        p.unlink()
    tmp.rmdir()
    return {"seed_seconds": round(time.monotonic() - started, 1),
            "database_mib": round(int(size) / 2**20, 1), "threads": [(t[0], t[3]) for t in t_rows]}


def percentiles(xs: list[float]) -> dict:
    xs = sorted(xs)

    def q(p):
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)
    return {"n": len(xs), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "mean_ms": round(statistics.fmean(xs), 2)}


def measure(url: str, token: str, queries, warmup: int = 30) -> dict:
    lat: dict[str, list[float]] = {}
    hits: dict[str, list[int]] = {}
    for i, (kind, q) in enumerate(queries):
        qs = urllib.parse.urlencode({**q, "limit": 20})
        t0 = time.perf_counter()
        status, r = http("GET", f"{url}/api/search?{qs}", token=token)
        ms = (time.perf_counter() - t0) * 1000
        assert status == 200, (status, r)
        if i < warmup:
            continue
        lat.setdefault(kind, []).append(ms)
        hits.setdefault(kind, []).append(len(r["hits"]))
    every = [x for v in lat.values() for x in v]
    return {"all": percentiles(every),
            "by_kind": {k: {**percentiles(v), "mean_hits": round(statistics.fmean(hits[k]), 1)}
                        for k, v in lat.items()}}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def scenario(bench, pg_admin_url: str) -> dict:
    """Seed, then measure, on each backend. `bench` is bench.py's Bench; `pg_admin_url` a
    PostgreSQL URL whose last path segment is replaced by the bench's own database.

    Options for quicker iteration (bench.py flags; an official figure uses neither): a cache
    directory (`--search-cache DIR`) keeps each backend's seeded corpus (the SQLite file, a
    PostgreSQL template database) and later runs copy it instead of seeding again (the server
    applies any newer migration to the copy); `--search-queries N` asks fewer queries."""
    threads, messages = (1000, 100_000) if bench.quick else (10_000, 1_000_000)
    n_queries = bench.args.search_queries or (150 if bench.quick else 630)
    cache = Path(bench.args.search_cache) if bench.args.search_cache else None
    out: dict = {"threads": threads, "messages": messages, "target_p95_ms": 50, "backends": {},
                 "cached_corpus": cache is not None}
    wanted = bench.args.search_backends.split(",")
    backends: list[tuple[str, str | None]] = [("sqlite", None)] if "sqlite" in wanted else []
    pg_name = "emergence_bench_search_" + os.urandom(4).hex()
    pg_url = pg_admin_url.rsplit("/", 1)[0] + "/" + pg_name
    if "postgres" in wanted and bench.pg_admin(f"CREATE DATABASE {pg_name}"):
        backends.append(("postgres", pg_url))
    try:
        for label, db_url in backends:
            out["backends"][label] = one_backend(bench, label, db_url, threads, messages, n_queries, cache)
    finally:
        if any(label == "postgres" for label, _ in backends):
            bench.pg_admin(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
    return out


def cache_key(threads: int, messages: int) -> str:
    return f"search-{threads}-{messages}"


def from_cache(bench, cache: Path, key: str, label: str, db_url: str | None, work: Path):
    """Copy a cached corpus into this run's database; its (users, membership), or None."""
    meta = cache / f"{key}-{label}.json"
    if not meta.exists():
        return None
    if db_url is None:
        shutil.copyfile(cache / f"{key}.db", work / "emergence.db")
    else:
        name = db_url.rsplit("/", 1)[1]
        template = f"emergence_bench_{key.replace('-', '_')}"
        if not (bench.pg_admin(f"DROP DATABASE {name}") and
                bench.pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}", timeout=900)):
            return None
    log(f"search: {label} corpus copied from the cache ({meta})")
    return json.loads(meta.read_text())


def to_cache(bench, cache: Path, key: str, label: str, db_url: str | None, work: Path, meta: dict):
    """Keep a freshly seeded corpus (before the server has run on it again)."""
    cache.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        shutil.copyfile(work / "emergence.db", cache / f"{key}.db")
    else:
        template = f"emergence_bench_{key.replace('-', '_')}"
        bench.pg_admin(f"DROP DATABASE IF EXISTS {template}")
        if not bench.pg_admin(f"CREATE DATABASE {template} TEMPLATE {db_url.rsplit('/', 1)[1]}",
                              timeout=900):
            return
    (cache / f"{key}-{label}.json").write_text(json.dumps(meta))


def one_backend(bench, label: str, db_url: str | None, threads: int, messages: int, n_queries: int,
                cache: Path | None) -> dict:
    corpus = Corpus()
    first = bench.emergence(database_url=db_url)
    work = Path(first.cwd)
    key = cache_key(threads, messages)
    try:
        cached = from_cache(bench, cache, key, label, db_url, work) if cache else None
        sqlite_path = None if db_url else work / "emergence.db"
        if cached is None:
            first.start()
            users = users_via_api(first.url, 101)
            # The server is stopped while the rows go in (it keeps per-thread state in memory); its
            # directory (the SQLite file) stays until `first.stop()`.
            os.killpg(first.proc.pid, signal.SIGTERM)
            first.proc.wait(timeout=30)
            ids = [u for u, _ in users]
            log(f"search: seeding {messages:,} messages in {threads:,} threads on {label}")
            seeded = (seed_sqlite(sqlite_path, corpus, ids, threads, messages) if sqlite_path
                      else seed_postgres(db_url, corpus, ids, threads, messages))
            log(f"search: {label} seeded in {seeded['seed_seconds']} s ({seeded['database_mib']} MiB)")
            if cache:
                to_cache(bench, cache, key, label, db_url, work, {**seeded, "users": ids[:2]})
        else:
            seeded = cached
        who_ids = seeded.pop("users", None)
        membership = seeded.pop("threads")
        server = bench.emergence(database_url=db_url or f"sqlite://{sqlite_path}").start(timeout=900)
        try:
            if cached is not None:
                users = [(uid, login(server.url, f"u{i:03d}")) for i, uid in enumerate(who_ids)]
            result = {**seeded}
            for who, (uid, token) in (("everything", users[0]), ("typical", users[1])):
                readable = [t for t, members in membership if uid in members]
                qs = corpus.queries(n_queries, readable)
                result[who] = {"threads_readable": len(readable), **measure(server.url, token, qs)}
                a = result[who]["all"]
                log(f"search {label} {who} ({len(readable)} threads): p50 {a['p50_ms']} ms, "
                    f"p95 {a['p95_ms']} ms, p99 {a['p99_ms']} ms")
                for kind, k in result[who]["by_kind"].items():
                    log(f"    {kind}: p50 {k['p50_ms']} ms, p95 {k['p95_ms']} ms, hits {k['mean_hits']}")
            return result
        finally:
            server.stop()
    finally:
        first.stop()


def login(url: str, username: str) -> str:
    status, r = http("POST", url + "/api/auth/login", {"username": username, "password": "benchpass-123"})
    assert status == 200, (status, r)
    return r["token"]
