"""BENCHMARK BASELINE ONLY: a re-creation of the 2014 DeepDist design, the "before" row of bench/word2vec.py.

    DO NOT USE THIS OUTSIDE THE BENCHMARK. Like the original, the server ``pickle.loads`` whatever is POSTed
    to /update, so anyone who can reach its port can run arbitrary code in the process. It binds to
    127.0.0.1 only, on a port the OS picks, and lives only as long as one benchmark row.

The design (github.com/dirkneumann/deepdist, ``deepdist/deepdist.py`` and the README's word2vec example):

- The driver runs one HTTP server thread (the original: a Flask/werkzeug development server) holding the
  master gensim model. ``GET /model`` answers the whole model, ``pickle.dumps(model, -1)``. ``POST /update``
  ``pickle.loads`` the body, a dict of dense deltas the size of the whole vocabulary, and applies
  ``descent(model, update)`` under a lock.
- ``train(rdd)`` is one Spark job: every partition (a ``mapPartitions`` task) GETs and unpickles the whole
  model, trains gensim on the whole partition with ``model.train`` (the learning rate starts at ``alpha``
  in every partition and decays by the partition's share of the corpus: 2014 gensim's ``train`` counted
  its progress against the whole vocabulary's word count), computes ``new - old`` for syn0 and syn1neg
  (syn1 with hierarchical softmax) and POSTs that, pickled. One big update per partition, the whole model
  per partition, both ways.

Where this differs from the original, and why:
- The server handles one request at a time (``threaded=False``), as the benchmark's brief specifies. The
  last version of the original passes ``threaded=True`` to ``app.run`` and guards the model with a
  readers-writer lock; with ``threaded=True`` here the server is werkzeug's (or the stdlib's) threading
  server, for comparison. Under the GIL the pickling, unpickling and ``descent`` run one at a time either way.
- Flask is used when it is importable (no debugger, no reloader, request logging off); otherwise the stdlib
  ``http.server.HTTPServer`` with the same two routes, which is faithful enough: the cost is in pickle and
  numpy, not in HTTP parsing. ``LegacyServer.backend`` says which one ran.
- The original pickled the model on the first GET and served that cached pickle until as many updates had
  come back as models had been served (so tasks that overlap can get a snapshot that misses updates already
  received). That rule is kept (``cache=True``); ``cache=False`` pickles afresh on every GET.
- The 2014 gensim trained with one worker thread by default; the driver model here should have
  ``workers=1`` (one Spark task, one core). Every task unpickles the same ``model.random``, as in the
  original, so concurrent tasks draw the same negatives.
"""
from __future__ import annotations

import logging
import pickle
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

CONTENT_TYPE = "application/deepdist"


def output_layer(model) -> str:
    """The name of the output-layer attribute the design syncs: syn1neg (negative sampling) or syn1 (hs)."""
    return "syn1neg" if model.negative else "syn1"


def gradient(model, sentences):
    """The original README's ``gradient``: train the whole partition, return dense ``new - old`` deltas."""
    layer = output_layer(model)
    syn0, syn1 = model.wv.vectors.copy(), getattr(model, layer).copy()
    # 2014 gensim: alpha * (1 - words so far / the corpus's words), restarted by every train call
    model.train(sentences, total_words=model.corpus_total_words, epochs=1)
    return {"syn0": model.wv.vectors - syn0, layer: getattr(model, layer) - syn1}


def descent(model, update):
    """The original README's ``descent``: add the deltas to the master model."""
    model.wv.vectors += update["syn0"]
    for layer in ("syn1neg", "syn1"):
        if layer in update:
            getattr(model, layer)[...] += update[layer]
    model.wv.norms = None  # gensim's cached unit vectors are stale now


class LegacyServer:
    """The 2014 model server: start/stop an HTTP server thread on 127.0.0.1, on a port the OS picks.

    ``stats`` counts requests, body bytes both ways and the seconds spent pickling, unpickling and in
    ``descent`` (all of which happen on the server thread, one request at a time unless ``threaded``).
    """

    def __init__(self, model, descent=descent, threaded=False, cache=True, flask=None):
        self.model, self.descent, self.threaded, self.cache = model, descent, threaded, cache
        if flask is None:
            try:
                import flask  # noqa: F401
                flask = True
            except ImportError:
                flask = False
        self.backend = "flask" if flask else "http.server"
        self.lock = threading.Lock()  # the original's write lock: pickling and descent, one at a time
        self.pmodel, self.served, self.received = None, 0, 0
        self.stats = {"gets": 0, "posts": 0, "pickles": 0, "bytes_out": 0, "bytes_in": 0,
                      "pickle_s": 0.0, "unpickle_s": 0.0, "descent_s": 0.0}
        self.httpd = self.thread = None
        self.url = None

    # The two routes, shared by both backends.
    def get_model(self) -> bytes:
        with self.lock:
            if self.pmodel is None or not self.cache:
                started = time.perf_counter()
                self.pmodel = pickle.dumps(self.model, -1)
                self.stats["pickle_s"] += time.perf_counter() - started
                self.stats["pickles"] += 1
            self.served += 1
            self.stats["gets"] += 1
            self.stats["bytes_out"] += len(self.pmodel)
            return self.pmodel

    def post_update(self, body: bytes) -> bytes:
        started = time.perf_counter()
        update = pickle.loads(body)  # deliberately unsafe: the 2014 design unpickles network data
        unpickled = time.perf_counter()
        with self.lock:
            self.received += 1
            self.descent(self.model, update)
            if self.received >= self.served:  # the original's rule: every served model has come back
                self.received = self.served = 0
                self.pmodel = None
            self.stats["posts"] += 1
            self.stats["bytes_in"] += len(body)
            self.stats["unpickle_s"] += unpickled - started
            self.stats["descent_s"] += time.perf_counter() - unpickled
        return b"OK"

    def start(self):
        if self.backend == "flask":
            self.httpd = self._flask_server()
        else:
            handler = _handler(self)
            self.httpd = (ThreadingHTTPServer if self.threaded else HTTPServer)(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="legacy2014-http", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.httpd = self.thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _flask_server(self):
        from flask import Flask, Response, request
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = Flask("deepdist2014")

        @app.route("/model", methods=["GET"])
        def model_flask():
            return Response(self.get_model(), mimetype=CONTENT_TYPE)

        @app.route("/update", methods=["POST"])
        def update_flask():
            return self.post_update(request.get_data())

        return make_server("127.0.0.1", 0, app, threaded=self.threaded)


def _handler(server: LegacyServer):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/model":
                return self.send_error(404)
            self._answer(server.get_model())

        def do_POST(self):
            if self.path != "/update":
                return self.send_error(404)
            self._answer(server.post_update(self.rfile.read(int(self.headers["Content-Length"]))))

        def _answer(self, body):
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def partition_task(url, index, iterator):
    """One Spark task of the 2014 design: fetch the whole model, train on the whole partition, post deltas.

    Yields one dict of counts and of the seconds each phase took, for the driver to add up.
    """
    clock = time.perf_counter
    started = clock()
    sentences = list(iterator)
    stats = {"tasks": 1, "sentences": len(sentences), "words": sum(map(len, sentences)), "bytes_get": 0,
             "bytes_post": 0, "fetch_s": 0.0, "unpickle_s": 0.0, "train_s": 0.0, "pickle_s": 0.0, "post_s": 0.0}
    if sentences:
        t0 = clock()
        request = urllib.request.Request(url + "/model", headers={"Content-Type": CONTENT_TYPE})
        with urllib.request.urlopen(request) as response:
            body = response.read()
        t1 = clock()
        model = pickle.loads(body)
        t2 = clock()
        update = gradient(model, sentences)
        t3 = clock()
        payload = pickle.dumps(update, -1)
        t4 = clock()
        request = urllib.request.Request(url + "/update", data=payload, headers={"Content-Type": CONTENT_TYPE})
        with urllib.request.urlopen(request) as response:
            response.read()
        t5 = clock()
        stats.update(bytes_get=len(body), bytes_post=len(payload), fetch_s=t1 - t0, unpickle_s=t2 - t1,
                     train_s=t3 - t2, pickle_s=t4 - t3, post_s=t5 - t4)
    stats["task_s"] = clock() - started
    yield stats


def train(server: LegacyServer, rdd) -> dict:
    """One pass over ``rdd`` the 2014 way (one Spark job, one update per partition). Returns the task stats
    added up, plus ``seconds`` of wall time."""
    url = server.url
    started = time.perf_counter()
    results = rdd.mapPartitionsWithIndex(lambda index, data: partition_task(url, index, data)).collect()
    summary = {}
    for result in results:
        for key, value in result.items():
            summary[key] = summary.get(key, 0) + value
    summary["seconds"] = time.perf_counter() - started
    return summary
