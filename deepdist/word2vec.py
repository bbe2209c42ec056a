"""word2vec on Spark: gensim's own training kernels, fed by a DeepDist parameter server.

    from deepdist import DeepDist
    from deepdist.word2vec import build_model, train

    corpus = sc.textFile(path).flatMap(split_line).cache()    # an RDD of token lists
    model = build_model(corpus, vector_size=100, min_count=5)  # vocabulary from Spark word counts
    with DeepDist(model) as dd:
        train(dd, corpus, epochs=5)                            # every Spark task trains and syncs
    model.wv.most_similar('king')

How a task trains. It walks its partition in chunks of about ``chunk_words`` raw words. For each chunk it
pulls only the rows the chunk can touch, trains them with gensim's kernels on private buffers (through
``_word2vec_inner.train_batch``: gensim's ``train_batch_sg`` / ``train_batch_cbow`` with the per-word work in
C), and pushes ``new rows - pulled rows``. Syncing every few thousand words matters: workers that train a
whole partition from one snapshot and then add their deltas wreck the model (README, "DeepDist: training
on Spark", on ``batch``).
- syn0 rows: the chunk's in-vocabulary words.
- syn1neg rows: the chunk's words, plus the negatives. gensim would draw negatives from the whole
  vocabulary, so we first draw a pool of ``negative_pool`` words from gensim's own unigram^0.75 table, and
  install a ``cum_table`` in which every other word has zero width. gensim then draws only from the pool. The
  set of touched rows is known before training, and the deltas are exact. The pool is redrawn for each
  chunk, so on average the negatives have the usual distribution.
- syn1 rows (hierarchical softmax): the Huffman-tree nodes on the chunk words' paths.
With more tasks at once, each syncs more often (``default_chunk_words``). With hierarchical softmax and
more than two, the few rows every chunk changes hundreds of times (``hot_rows``) are read again after
training and pushed as 1/N of the way from their value then to the task's own, not as the task's change:
adding N such changes made from one stale value overshoots (``HS_TASKS_AT_ONCE``).
The learning rate decays linearly with the number of words trained so far by *all* workers. That number
is the server's progress counter, pulled with every chunk. So the schedule is gensim's, however the corpus
is partitioned.
"""
from __future__ import annotations

import bz2
import gzip
import threading
import time
import warnings

import numpy as np
from gensim import matutils, utils
from gensim.models import Word2Vec
from gensim.models.word2vec_inner import MAX_WORDS_IN_BATCH, train_batch_cbow, train_batch_sg

from . import kernels
from .client import Client
from .models import is_word2vec, param_names
from .spark import PROGRESS, WORDS, load_shell, progress_rows, worker_model

# Raw words a task trains between syncs unless ``train`` is told otherwise: gensim's 10,000-word jobs, and
# half that with hierarchical softmax, where every pair a word trains updates the Huffman-tree nodes near the
# root, rows that all tasks change at once. Measured on a 6M-word corpus (hs, 2 tasks, one epoch, 4 paired
# runs): 5,000-word chunks raised analogy accuracy from a mean of 5.37% to 5.83% (one task: 6.05%; gensim
# with 2 threads: 5.74%) for about 10% of the speed. With negative sampling they cost 7% of the speed on the
# excerpt for no clear gain: its pool of negatives is drawn per chunk (docs/benchmarks.md, "Sync interval").
CHUNK_WORDS = 10_000
CHUNK_WORDS_HS = 5_000
# Those are for 2 tasks training at once. With N tasks, negative sampling syncs (N / 2)^2 times as often (down
# to MIN_CHUNK_WORDS): the other tasks' words a task misses between its pull and its push would stay about as
# many if the interval shrank as 2 / N, but measured, quality needs it to shrink faster. 6M-word corpus,
# negative sampling, one epoch, WordSim353 / analogies, means of the seeds run: 8 tasks at 10,000-word chunks
# collapsed (0.056 / 0.1%), at 2,500 words (2 / N) 0.278 / 1.97% (3 runs), at 1,250 0.308 / 2.35% (2 seeds);
# 4 tasks at 5,000 words (2 / N) 0.269 / 2.37%, at 2,500 ((2 / N)^2) 0.280 / 3.07% (3 seeds each); gensim
# with 4 threads 0.272 / 3.0%, 2 tasks at 10,000 words 0.276 / 3.3%. Shorter chunks cost speed: 4 tasks
# trained 315-388k words/s at 2,500 words against 381-448k at 5,000. With 8 tasks the default, 1,000 words,
# scored 0.295 / 2.95% (2 seeds) at 194-201k words/s (243-272k at 2,500). Hierarchical softmax is not rescued
# this way (``HS_TASKS_AT_ONCE``).
MIN_CHUNK_WORDS = 1_000
# Hierarchical softmax shortens its chunks only as 2 / tasks, and stops sooner: beyond 2 tasks it relies on
# its hot rows (``HS_TASKS_AT_ONCE``), and a shorter chunk has fewer rows that it changes HOT_TOUCHES times.
# 6M-word corpus, one epoch, WordSim353 / analogies: with 8 tasks at once (means of 4 seeds) 1,250-word chunks
# (35 hot rows) 0.374 / 4.4% at 213-243k words/s, 2,500 (67 rows) 0.394 / 5.0% at 280-304k, 5,000 (122 rows)
# 0.389 / 4.7%; with 4 tasks 2,500 words 6.1% against 5,000's 5.7%; with 3 tasks 2,500 words 0.384 / 5.9% at
# 239-255k words/s against 3,333's 0.396 / 5.6% at 310-326k (2 seeds each).
MIN_CHUNK_WORDS_HS = 2_500
# Hierarchical softmax with more tasks than this training at once lost most of its quality as plain deltas,
# whatever the chunk size (6M-word corpus, one epoch, analogies: 6.3% with 2 tasks, 1.4% with 3, 0.6% with 4,
# 2.3% with 4 at 1,000-word chunks). Its hottest rows, the Huffman nodes near the root and the most frequent
# words' vectors, are changed hundreds of times in every chunk of every task: each task's change takes such
# a row most of the way to where that task's data pulls it, so adding N tasks' changes, made from about the
# same stale value, overshoots N-fold, and from 3 tasks on the overshoot grows. With more than this many tasks
# at once, a task moves each row it expects to change at least HOT_TOUCHES times per chunk 1/N of the way
# from the row's current value to its own trained value, as MLlib averages the partitions' vectors of a
# word: WordSim353 / analogies with 4 tasks 0.211 / 0.6% -> 0.387-0.399 / 5.4-6.5% (MLlib with 4
# partitions: 0.413 / 5.9%), with 8 tasks 0.312 / 0.2% -> 0.353-0.430 / 4.4-5.3% (MLlib: 0.406-0.418 / 5.5-6.0%;
# docs/benchmarks.md, "Tasks at once"). HOT_TOUCHES = 300 scored best of 30 to 3,000.
HS_TASKS_AT_ONCE = 2
HOT_TOUCHES = 300

# id() of every DeepDist a word2vec train is running on: one at a time each (train's error says why).
_TRAINING, _TRAINING_LOCK = set(), threading.Lock()

# gensim's kernels behind a batch loop that prepares each batch in C (_word2vec_inner.pyx; gensim's own loop
# spent a quarter of a batch's time on that in Python, with hs); gensim's own loop with DEEPDIST_PURE_PYTHON=1,
# or when the installed gensim's kernels no longer have the signatures deepdist was built against (Cython
# checks them at import).
_train_batch = None
if kernels.IMPLEMENTATION == "cython":
    try:
        from ._word2vec_inner import train_batch as _train_batch
    except ModuleNotFoundError as exc:  # not built: an error, as for deepdist._core (kernels.py)
        raise ImportError("deepdist._word2vec_inner is not built: install with `pip install .`, or build in "
                          "place with `python setup.py build_ext --inplace`") from exc
    except (ImportError, TypeError) as exc:
        warnings.warn(f"deepdist._word2vec_inner does not fit this gensim ({exc}); word2vec trains with "
                      f"gensim's own batch loop, which is slower: reinstall deepdist to rebuild it",
                      RuntimeWarning, stacklevel=2)

__all__ = ["build_model", "train", "wikipedia_dump", "wikipedia_sentences", "read_sentences", "split_line"]

# The 206-article Wikipedia excerpt in gensim's test data (in every gensim wheel).
WIKIPEDIA_EXCERPT = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


# -- corpora ------------------------------------------------------------------------------------------------
def wikipedia_sentences(path=None, min_tokens: int = 5) -> list:
    """The Wikipedia excerpt that ships with gensim (or the dump at ``path``, .xml, .xml.gz or .xml.bz2, read
    here), as token lists: one per paragraph of each article. For a whole dump, read by Spark's executors,
    see ``wikipedia_dump``.

    Paragraphs, not whole articles: some articles are longer than the 10,000 words gensim trains per
    sentence, and it silently drops the rest. Tokens are lowercase and alphabetic, as gensim's WikiCorpus
    makes them. The excerpt gives about 8,400 sentences and 437,000 words; parsing takes about 3 s.
    """
    from gensim.corpora.wikicorpus import extract_pages
    from gensim.test.utils import datapath

    sentences = []
    with _open_compressed(path or datapath(WIKIPEDIA_EXCERPT), "rb") as f:
        for title, text, _ in extract_pages(f, filter_namespaces=("0",)):
            sentences += _article_sentences(title, text, min_tokens)
    return sentences


def wikipedia_dump(spark_context, path, min_tokens: int = 5, split_bytes: int = None):
    """An RDD of the token lists of a Wikipedia XML dump (``pages-articles``, ``.xml`` or ``.xml.bz2``, any
    path Spark reads), parsed by the executors: the same sentences ``wikipedia_sentences`` makes, in order.

    Hadoop reads the file in splits (a bz2 file too: it is split at its compression blocks) and cuts each
    split into one record per page at ``</page>``, which cannot occur inside a page's escaped text; a page
    that crosses a split belongs to the split it starts in. split_bytes: the largest split (default:
    Hadoop's, the file system's block size), hence the number of partitions.
    """
    conf = {"textinputformat.record.delimiter": "</page>"}
    if split_bytes:
        conf["mapreduce.input.fileinputformat.split.maxsize"] = str(int(split_bytes))
    pages = spark_context.newAPIHadoopFile(str(path), "org.apache.hadoop.mapreduce.lib.input.TextInputFormat",
                                           "org.apache.hadoop.io.LongWritable", "org.apache.hadoop.io.Text",
                                           conf=conf)
    return pages.flatMap(lambda offset_page: _page_sentences(offset_page[1], min_tokens))


def _page_sentences(record: str, min_tokens: int) -> list:
    """The sentences of one record of ``wikipedia_dump``: the text from one ``</page>`` to the next (the
    first also holds the dump's header, the last only its closing tag)."""
    from xml.etree import ElementTree

    start = record.find("<page>")
    if start < 0:
        return []
    page = ElementTree.fromstring(record[start:] + "</page>")  # no namespace: the root's tag was cut off
    if page.findtext("ns") != "0":
        return []
    return _article_sentences(page.findtext("title", ""), page.findtext("revision/text", ""), min_tokens)


def _article_sentences(title: str, text: str, min_tokens: int) -> list:
    """An article's paragraphs as token lists of at least ``min_tokens`` tokens; none for a redirect or a
    page of a namespace gensim's WikiCorpus ignores."""
    from gensim.corpora.wikicorpus import IGNORED_NAMESPACES, filter_wiki, tokenize

    if not text or text.lstrip().lower().startswith("#redirect"):
        return []
    if any(title.startswith(namespace + ":") for namespace in IGNORED_NAMESPACES):
        return []
    return [tokens for tokens in map(tokenize, filter_wiki(text).split("\n")) if len(tokens) >= min_tokens]


def split_line(line: str, max_tokens: int = MAX_WORDS_IN_BATCH) -> list:
    """One line of text as token lists of at most ``max_tokens`` whitespace-separated tokens
    (``[]`` for a blank line). For Spark: ``sc.textFile(path).flatMap(split_line)``."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    tokens = line.split()
    return [tokens[i:i + max_tokens] for i in range(0, len(tokens), max_tokens)]


def _unsplit(line: str) -> TypeError:
    """The error for a sentence that is still a line of text: gensim would train its characters as words."""
    return TypeError(f"deepdist.word2vec: a sentence must be a list of tokens, got a str ({line[:40]!r}); split "
                     f"lines first, e.g. sc.textFile(path).flatMap(split_line)")


def read_sentences(path):
    """Yield the token lists of a local .txt, .txt.gz or .txt.bz2 file: one sentence per line, split on whitespace.
    A line longer than 10,000 tokens is cut into pieces (gensim would drop everything after 10,000)."""
    with _open_compressed(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield from split_line(line)


def _open_compressed(path, mode, **kwargs):
    """``path`` opened through bz2 or gzip by its ending (.bz2, .gz), else as it is."""
    name = str(path)
    opener = bz2.open if name.endswith(".bz2") else gzip.open if name.endswith(".gz") else open
    return opener(path, mode, **kwargs)


# -- the vocabulary -----------------------------------------------------------------------------------------
class _Total:
    """The key of a corpus total in the word-count shuffle: equal only to the total of the same name, in any
    process, so that no token can clash with it (gensim takes any hashable token, integers included)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __eq__(self, other):
        return type(other) is _Total and other.name == self.name

    def __hash__(self):
        return hash(("deepdist word2vec total", self.name))

    def __reduce__(self):
        return _Total, (self.name,)


def _count_partition(index, sentences):
    """Per partition: (word, (count, first position)) plus the two corpus totals under ``_Total`` keys."""
    seen, position, n_sentences = {}, 0, 0
    for sentence in sentences:
        if isinstance(sentence, str):
            raise _unsplit(sentence)
        n_sentences += 1
        for word in sentence:
            entry = seen.get(word)
            if entry is None:
                seen[word] = [1, position]
            else:
                entry[0] += 1
            position += 1
    for word, (count, first) in seen.items():
        yield word, (count, (index, first))
    # Totals ride in the same shuffle, so the corpus is read once.
    yield _Total("sentences"), (n_sentences, (-1, -1))
    yield _Total("words"), (position, (-1, -1))


def _merge_counts(a, b):
    return a[0] + b[0], min(a[1], b[1])


def build_model(rdd, vector_size=100, window=5, min_count=5, sg=1, negative=5, hs=0, sample=1e-3, seed=1,
                trim_rule=None, **word2vec_kwargs) -> Word2Vec:
    """A gensim Word2Vec with its vocabulary built from ``rdd`` (token lists) by Spark, ready to train.

    The arguments are gensim's; its defaults, except skip-gram (``sg=1``) here. Spark counts the words (one
    pass over ``rdd``). Only the retained (word, count) pairs and two totals come to the driver, never the
    corpus. Words are ordered by their first occurrence in the RDD before gensim sorts them by count, as
    ``build_vocab`` does. So the vocabulary, its row order and the initial vectors are exactly those of
    ``Word2Vec(...).build_vocab(sentences)`` on the same sentences, however ``rdd`` is partitioned.
    ``corpus_count`` and ``corpus_total_words`` (raw words, for the learning-rate schedule) are set.
    ``max_vocab_size`` is gensim's memory cap while scanning; Spark needs none, and it is ignored here.
    """
    model = Word2Vec(vector_size=vector_size, window=window, min_count=min_count, sg=sg, negative=negative,
                     hs=hs, sample=sample, seed=seed, **word2vec_kwargs)
    counts = (rdd.mapPartitionsWithIndex(_count_partition).reduceByKey(_merge_counts)
              # the trim rule gensim itself applies (min_count or trim_rule), applied before collecting
              .filter(lambda kv: isinstance(kv[0], _Total) or utils.keep_vocab_item(kv[0], kv[1][0], min_count,
                                                                                     trim_rule))
              .collect())
    totals = {key.name: value[0] for key, value in counts if isinstance(key, _Total)}
    words = sorted(((key, value) for key, value in counts if not isinstance(key, _Total)), key=lambda kv: kv[1][1])
    if not words:
        raise ValueError(f"no word of the RDD's {totals.get('words', 0):,} words (in "
                         f"{totals.get('sentences', 0):,} sentences) occurs min_count={min_count} times or more"
                         + (" or passes trim_rule" if trim_rule else "") + ": the vocabulary would be empty")
    model.build_vocab_from_freq({word: count for word, (count, _) in words}, corpus_count=totals.get("sentences", 0),
                                trim_rule=trim_rule)
    model.corpus_total_words = totals.get("words", 0)  # build_vocab_from_freq leaves it at 0
    return model


# -- training -----------------------------------------------------------------------------------------------
def train(dd, rdd, epochs: int = None, chunk_words: int = None, negative_pool=2000, start_alpha=None,
          end_alpha=None, compute_loss: bool = False, keep_words: int = 1_000_000) -> dict:
    """Train ``dd.model`` (a gensim Word2Vec served by ``dd``) on ``rdd`` (token lists) for ``epochs`` passes.

    Spark runs partitions in order: with many partitions in corpus order the tasks running at once read
    neighbouring text. With no more partitions than cores each task reads a distant part of the corpus;
    ``deepdist.spark.deal(rdd, n)`` deals it round-robin instead, as MLlib's Word2Vec does (what that does
    to quality is within the order-to-order spread we measured; README, "Corpus layout").

    epochs: passes over ``rdd`` (default: the model's own ``epochs``, gensim's 5 unless the model was built
        with another, as ``Word2Vec(sentences)`` trains).

    chunk_words: raw words a task trains between syncs (default: ``default_chunk_words``: ``CHUNK_WORDS``,
        or ``CHUNK_WORDS_HS`` with hierarchical softmax, for up to 2 tasks training at once, fewer for
        more). Smaller chunks mean less staleness but more round trips. The tasks at once are
        the partitions (times the epochs, when each epoch is a task of its own; see keep_words), or Spark's
        ``defaultParallelism`` task slots if fewer (``spark.default.parallelism`` set above the cluster's
        cores overstates them; the summary says how many were counted). With hierarchical softmax and more
        than 2 tasks at once, the rows every task changes hundreds of times per chunk move 1/N of the way
        toward each task's values instead of adding up the tasks' changes (``HS_TASKS_AT_ONCE``).
    negative_pool: negatives per chunk are drawn from this many draws of the noise distribution (see the
        module docstring). None: draw from the whole vocabulary. That is exact, but each chunk then pulls
        all of syn1neg.
    start_alpha, end_alpha: the learning rate, decayed linearly over ``epochs`` passes by global progress
        (default: the model's ``alpha`` and ``min_alpha``).
    compute_loss: add gensim's training loss of every task to the summary as 'loss', and leave it where
        gensim's own train does (``model.get_latest_training_loss()``).
    keep_words: with several epochs, partitions of at most this many words (judged by the model's
        ``corpus_total_words`` over the RDD's partitions) are kept in memory by their task, which trains
        every epoch on them: one Spark task per partition rather than one per partition and epoch. A Spark
        task costs 100-150 core-ms of Spark's own time, and a kept word about 65 bytes. 0: never keep.
        Only when every partition's task can run at once (no more partitions than Spark's
        ``defaultParallelism`` task slots): tasks that wait for a slot would train all their epochs after
        the first wave had trained all of its, at a learning rate already decayed by the first wave's work
        (20 partitions on 2 slots halved the analogy score on the excerpt).
    Returns the summary of all epochs: partitions, chunk_words, tasks_at_once, hot_rows (moved toward each
    task's values: hierarchical softmax beyond HS_TASKS_AT_ONCE), records (sentences), words (raw),
    effective_words (trained, after subsampling and vocabulary), updates (chunks), bytes_sent/received,
    seconds (wall), task_seconds (the tasks' own, added up), kernel_seconds (of those, inside gensim's
    training kernel: the rest is what distribution costs the tasks) and vocabulary_loads (how many times a
    Python worker unpickled the vocabulary: once per worker, not per task).
    """
    model = dd.model
    if not is_word2vec(model):
        raise TypeError("deepdist.word2vec.train needs a DeepDist serving a gensim Word2Vec")
    with _TRAINING_LOCK:
        if id(dd) in _TRAINING:
            raise RuntimeError("a word2vec train is already running on this DeepDist: the learning rate follows "
                               "the words the server counts for every job, so two at once would each decay "
                               "it by the other's words")
        _TRAINING.add(id(dd))
    try:
        return _train(dd, model, rdd, epochs, chunk_words, negative_pool, start_alpha, end_alpha, compute_loss,
                      keep_words)
    finally:
        with _TRAINING_LOCK:
            _TRAINING.discard(id(dd))


def _train(dd, model, rdd, epochs, chunk_words, negative_pool, start_alpha, end_alpha, compute_loss,
           keep_words) -> dict:
    """``train``'s work, one at a time per DeepDist."""
    missing = [name for name in param_names(model) if name not in dd.names]
    if missing:
        raise ValueError(f"this Word2Vec trains {param_names(model)}, and the DeepDist serves {dd.names}: "
                         f"leave params= out for a Word2Vec")
    if not model.corpus_total_words:
        raise ValueError("the model has no vocabulary (or no corpus_total_words): build it with "
                         "build_model(rdd) or model.build_vocab(sentences) before DeepDist(model)")
    if not (model.hs or model.negative):  # gensim's own train refuses it too: nothing would be trained
        raise ValueError("the model has hs=0 and negative=0, so training would change nothing: set hs=1 or "
                         "negative > 0")
    if model.hs and len(model.wv) < 2:  # a one-word Huffman tree has no inner node (gensim fails on it too)
        raise ValueError("hierarchical softmax needs at least 2 words in the vocabulary, the model has "
                         f"{len(model.wv)}: lower min_count, or use negative sampling")
    epochs = model.epochs if epochs is None else epochs
    if epochs < 1 or any(value is not None and value < 1 for value in (chunk_words, negative_pool)):
        raise ValueError(f"epochs, chunk_words and negative_pool must be positive, got {epochs}, {chunk_words} "
                         f"and {negative_pool}")
    partitions = rdd.getNumPartitions()
    slots = max(1, rdd.context.defaultParallelism // int(rdd.context.getConf().get("spark.task.cpus", "1")))
    keep = epochs > 1 and partitions <= slots and model.corpus_total_words <= keep_words * partitions
    # A kept partition is one task for all its epochs; otherwise every epoch's partitions are tasks of one
    # job, and Spark runs as many of them at once as it has slots.
    tasks_at_once = min(partitions if keep else partitions * epochs, slots)
    if chunk_words is None:
        chunk_words = default_chunk_words(model.hs, tasks_at_once)
    # Hierarchical softmax beyond HS_TASKS_AT_ONCE: the rows every task changes all the time move toward
    # each task's values instead of adding up (HS_TASKS_AT_ONCE's comment).
    hot = hot_rows(model, chunk_words) if model.hs and tasks_at_once > HS_TASKS_AT_ONCE else {}
    job = {"chunk_words": chunk_words, "hot_rows": hot, "hot_share": 1.0 / tasks_at_once if hot else None,
           "negative_pool": negative_pool if model.negative else None, "compute_loss": compute_loss,
           "start_alpha": model.alpha if start_alpha is None else start_alpha,
           "end_alpha": model.min_alpha if end_alpha is None else end_alpha,
           # The server's word counter keeps counting across jobs: the schedule starts from where it is now.
           "words_before": float(dd.progress_counts()[WORDS]),
           "train_count": int(model.train_count),  # a new block's server counts from 0 again
           "total_words": float(model.corpus_total_words) * epochs, "seed": model.seed,
           "partitions": partitions, "epochs_in_task": epochs if keep else 1}
    if keep:  # small partitions: each task keeps its partition and trains every epoch on it
        summary = dd.run(rdd, _train_partition, job, parts=partitions * epochs)
    else:
        # Large partitions: all epochs in one Spark job, over the RDD repeated ``epochs`` times (a union
        # shares rdd's cache). A core that finishes its partition starts on the next epoch's instead of idling
        # until the slowest task of the epoch ends, and the job's start-up is paid once. Spark starts tasks in
        # partition order, so epochs still run one after another; the learning rate follows the global word
        # count either way.
        passes = rdd.context.union([rdd] * epochs) if epochs > 1 else rdd
        if passes.getNumPartitions() != partitions * epochs:
            # Spark unions RDDs that share a partitioner (partitionBy, then mapPartitions preserving it)
            # partition by partition: one task per partition for all epochs, each taken for epoch 0.
            # Dropping the partitioner (a pass-through map, pipelined into the task) gives one per epoch.
            passes = rdd.context.union([rdd.mapPartitions(iter)] * epochs)
        summary = dd.run(passes, _train_partition, job)
    for key in ("words", "effective_words", "kernel_seconds", "vocabulary_loads"):  # an RDD with no partitions
        summary.setdefault(key, 0)
    summary["chunk_words"], summary["tasks_at_once"] = chunk_words, tasks_at_once
    summary["hot_rows"] = sum(map(len, hot.values()))
    # Where gensim's own train leaves them: the loss of this train, or none.
    model.compute_loss, model.running_training_loss = compute_loss, summary.setdefault("loss", 0.0)
    # gensim's bookkeeping, as its own train leaves it (a later gensim train warns from min_alpha_yet_reached)
    done = min(1.0, summary["words"] / job["total_words"])
    model.epochs, model.train_count = epochs, model.train_count + 1
    model.total_train_time += summary["seconds"]
    model.min_alpha_yet_reached = job["start_alpha"] - (job["start_alpha"] - job["end_alpha"]) * done
    return summary


def default_chunk_words(hs: bool, tasks_at_once: int) -> int:
    """The words a task trains between syncs when ``train`` is not told: ``CHUNK_WORDS`` for up to 2 tasks at
    once and (2 / tasks)^2 of it for more, down to ``MIN_CHUNK_WORDS``; with hierarchical softmax
    ``CHUNK_WORDS_HS`` and 2 / tasks of it, down to ``MIN_CHUNK_WORDS_HS``."""
    tasks = max(1, tasks_at_once)
    if hs:
        return max(MIN_CHUNK_WORDS_HS, min(CHUNK_WORDS_HS, CHUNK_WORDS_HS * 2 // tasks))
    return max(MIN_CHUNK_WORDS, min(CHUNK_WORDS, CHUNK_WORDS * 4 // tasks ** 2))


def hot_rows(model, chunk_words: int) -> dict:
    """``{name: sorted int64 rows}``: the rows of syn0 and syn1 (hierarchical softmax) that a chunk of
    ``chunk_words`` words is expected to change at least ``HOT_TOUCHES`` times. A word has about ``window + 1``
    context words (gensim shrinks each word's window at random), and its vector changes once for each word
    it is context of. Skip-gram predicts each word from each of its context words, changing the Huffman
    nodes on its path each time; CBOW predicts it once, from their average."""
    counts = np.asarray(model.wv.expandos["count"], np.float64)
    share = counts / counts.sum()
    lengths, _, nodes, _ = _huffman_paths(model)
    node_share = np.bincount(nodes, weights=np.repeat(share, lengths), minlength=len(model.wv))
    contexts = chunk_words * (model.window + 1)
    predictions = contexts if model.sg else chunk_words
    return {"syn0": np.flatnonzero(contexts * share >= HOT_TOUCHES),
            "syn1": np.flatnonzero(predictions * node_share >= HOT_TOUCHES)}


def _train_partition(model_broadcast, job, index, sentences):
    """The Spark task: train one partition chunk by chunk, syncing with the server after each chunk; every
    epoch on it if ``job["epochs_in_task"]`` says so, else the one epoch its index in the union names."""
    started = time.monotonic()
    epoch, partition = (0, index) if job["epochs_in_task"] > 1 else divmod(index, job["partitions"])
    model, paths, loaded = _task_model(model_broadcast)
    trainer = _Trainer(model, job, partition, paths, loaded)
    chunks = trainer.prepare(_chunks(sentences, job["chunk_words"]))
    if job["epochs_in_task"] > 1:
        # Kept: every epoch trains the same chunks, whose words are looked up in the vocabulary once (that
        # lookup was 7% of a task's time, hierarchical softmax on the dictionaries corpus).
        chunks = list(chunks)
        passes = [(epoch, chunks) for epoch in range(job["epochs_in_task"])]
    else:
        passes = [(epoch, chunks)]
    with Client(job["address"], **job["client"]) as client:
        for epoch, prepared in passes:
            trainer.seed(epoch)
            trainer.train(client, prepared)
            client.push({PROGRESS: progress_rows(partitions=1)})
        client.flush()
    if not job["compute_loss"]:
        del trainer.counts["loss"]
    yield dict(trainer.counts, partitions=len(passes), seconds=time.monotonic() - started,
               bytes_sent=client.bytes_sent, bytes_received=client.bytes_received)


# A Python worker runs task after task of a job (spark.python.worker.reuse, on by default), and Spark hands
# every task of the job the same broadcast object. Unpickling the vocabulary once per task would cost 1.3 s
# a task at a 2M-word vocabulary (2.9 s with hs): the last job's shell, and its flattened Huffman paths, stay
# in the worker until a task of another job replaces them.
_last_shell = (None, None, None)  # (broadcast, model shell, Huffman paths or None)


def _task_model(model_broadcast) -> tuple:
    """This task's own model and its vocabulary's Huffman paths (None without hs); whether the shell had
    to be unpickled for it."""
    global _last_shell
    broadcast, shell, paths = _last_shell
    loaded = broadcast is not model_broadcast
    if loaded:
        _last_shell = (None, None, None)  # the previous job's goes first
        shell = load_shell(model_broadcast)
        paths = _huffman_paths(shell) if shell.hs else None
        _last_shell = (model_broadcast, shell, paths)
    return worker_model(shell), paths, loaded


def _huffman_paths(model) -> tuple:
    """Every word's Huffman path (the syn1 rows it trains) and code, flattened: word i's nodes are
    ``nodes[starts[i]:starts[i] + lengths[i]]``, its code bits ``bits[...]`` over the same range.
    Returns (lengths int64, starts int64, nodes uint32, bits uint8), as ``_word2vec_inner`` reads them."""
    points, codes = model.wv.expandos["point"], model.wv.expandos["code"]
    lengths = np.fromiter(map(len, points), np.int64, len(points))
    if not np.array_equal(lengths, np.fromiter(map(len, codes), np.int64, len(codes))):
        raise ValueError("the model's Huffman tree gives a word more or fewer code bits than path nodes")
    return (lengths, np.cumsum(lengths) - lengths, np.concatenate(points).astype(np.uint32),
            np.concatenate(codes).astype(np.uint8))


def _chunks(sentences, chunk_words):
    """(sentences, how many of them start here): lists of about ``chunk_words`` raw words, each sentence a
    list (what ``kernels.index_words`` reads). Sentences over gensim's 10,000-word limit are cut into pieces
    (gensim would silently drop their tails)."""
    chunk, words, records = [], 0, 0
    for sentence in sentences:
        if type(sentence) is not list:
            if isinstance(sentence, str):
                raise _unsplit(sentence)
            try:
                sentence = list(sentence)
            except TypeError:
                raise TypeError(f"deepdist.word2vec: a sentence must be a list of tokens, got "
                                f"{type(sentence).__name__} ({sentence!r:.40})") from None
        pieces = ([sentence] if len(sentence) <= MAX_WORDS_IN_BATCH else
                  [sentence[i:i + MAX_WORDS_IN_BATCH] for i in range(0, len(sentence), MAX_WORDS_IN_BATCH)])
        for number, piece in enumerate(pieces):
            if chunk and words + len(piece) > chunk_words:
                yield chunk, records
                chunk, words, records = [], 0, 0
            chunk.append(piece)
            words += len(piece)
            records += number == 0
    if chunk:
        yield chunk, records


def _jobs(chunk, raw: int):
    """gensim's own split of a chunk of ``raw`` words into calls of at most 10,000 raw words
    (``Word2Vec._job_producer``): one ``train_batch_*`` call trains at most 10,000 words and ignores the rest.
    Yields (first sentence, end sentence, raw words) of each call."""
    if raw <= MAX_WORDS_IN_BATCH:  # one call (the default chunk size): no need to walk the sentences
        yield 0, len(chunk), raw
        return
    first, words = 0, 0
    for end, sentence in enumerate(chunk):
        if end > first and words + len(sentence) > MAX_WORDS_IN_BATCH:
            yield first, end, words
            first, words = end, 0
        words += len(sentence)
    if first < len(chunk):
        yield first, len(chunk), words


class _Trainer:
    """One task's model with full-size private buffers, and the pull-train-push cycle of one chunk."""

    def __init__(self, model, job, partition, paths=None, loaded=True):
        """paths: ``_huffman_paths(model)`` with hs (computed here if None); loaded: whether this task
        unpickled the vocabulary (counted as ``vocabulary_loads``)."""
        self.model, self.job = model, job
        vocab, size = len(model.wv.index_to_key), model.layer1_size
        # gensim's kernels index these by raw pointer with no dtype or shape check: full-size C-contiguous
        # float32. np.zeros maps pages lazily, so the rows a task never touches cost no memory.
        model.wv.vectors = np.zeros((vocab, model.wv.vector_size), np.float32)
        self.buffers = {"syn0": model.wv.vectors}
        if model.negative:
            model.syn1neg = self.buffers["syn1neg"] = np.zeros((vocab, size), np.float32)
        self.paths = None
        if model.hs:
            model.syn1 = self.buffers["syn1"] = np.zeros((vocab, size), np.float32)
            self.paths = paths or _huffman_paths(model)
            self.path_lengths, self.path_starts, self.path_nodes, _ = self.paths
        # Rows moved toward this task's values instead of by its change (train's hot_rows), as masks.
        self.hot = {}
        for name, rows in job.get("hot_rows", {}).items():
            self.hot[name] = np.zeros(vocab, bool)
            self.hot[name][rows] = True
        self.partition = partition
        self.seed(0)
        self.noise_table = model.cum_table  # the full unigram^0.75 table the pools are drawn from
        self.key_to_index = model.wv.key_to_index
        self.touched = np.zeros(vocab, bool)  # scratch for ``rows``: all False between chunks
        self.work = matutils.zeros_aligned(size, dtype=np.float32)
        self.neu1 = matutils.zeros_aligned(size, dtype=np.float32)
        self.counts = {"records": 0, "words": 0, "effective_words": 0, "updates": 0, "loss": 0.0,
                       "kernel_seconds": 0.0, "vocabulary_loads": int(loaded)}

    def seed(self, epoch) -> None:
        """Seed model.random (subsampling and negative draws) and the pool's rng per (model seed, the model's
        train count, words the server had counted before this train, epoch, partition): tasks differ from
        each other, from epoch to epoch and from one train call to the next, in one DeepDist block or the
        next (as gensim's model.random carries on), and a rerun repeats itself."""
        seeds = np.random.SeedSequence([self.job["seed"], self.job["train_count"], int(self.job["words_before"]),
                                        epoch, self.partition]).spawn(2)
        self.model.random = np.random.RandomState(seeds[0].generate_state(1)[0])
        self.rng = np.random.default_rng(seeds[1])

    def rows(self, words) -> tuple:
        """The rows of each parameter a chunk of these ``words`` (vocabulary indexes) may touch (sorted, or
        None for all rows), and the cum_table its negatives are to be drawn from."""
        # Sorted and distinct by a mark per vocabulary word: cheaper than sorting or np.union1d.
        touched, cum_table = self.touched, self.noise_table
        touched[words] = True
        rows = {"syn0": np.flatnonzero(touched)}
        if self.model.negative:
            if self.job["negative_pool"] is None:
                rows["syn1neg"] = None
            else:
                pool, cum_table = self.draw_pool(self.job["negative_pool"])
                touched[pool] = True
                touched[0] = True  # reachable too: gensim's draw of exactly 0 lands on it whatever its width
                rows["syn1neg"] = np.flatnonzero(touched)
        touched[:] = False
        if self.model.hs:
            words, lengths = rows["syn0"], self.path_lengths[rows["syn0"]]
            # All the chunk's paths in one gather: each node's offset in path_nodes is its word's start plus
            # its position along the path.
            offsets = (np.repeat(self.path_starts[words] - (np.cumsum(lengths) - lengths), lengths)
                       + np.arange(lengths.sum()))
            touched[self.path_nodes[offsets]] = True
            rows["syn1"] = np.flatnonzero(touched)
            touched[:] = False
        return rows, cum_table

    def draw_pool(self, size) -> tuple:
        """Draw ``size`` words as gensim draws negatives; return them and a cum_table in which only they have
        width, in proportion to how often each was drawn."""
        table = self.noise_table
        # Draws in the table's dtype, sorted: searchsorted would otherwise convert the whole table to int64
        # on every call, and sorted keys walk it in order (0.75 -> 0.18 ms at a million words).
        keys = np.sort(self.rng.integers(0, int(table[-1]), size, dtype=table.dtype))
        pool = np.searchsorted(table, keys, side="left")  # = gensim's bisect_left
        words, draws = np.unique(pool, return_counts=True)
        cumulative = np.cumsum(draws, dtype=np.float64)
        steps = np.round(cumulative * (float(table[-1]) / cumulative[-1])).astype(np.uint32)
        # Entry i is the step of the last pool word <= i (0 before the first): a run of equal values per pool
        # word. Built from the pool's distinct words, not from per-word counts over the whole vocabulary,
        # which cost 15 ms a chunk at a million words.
        runs = np.diff(words, prepend=0, append=len(table))
        return pool, np.repeat(np.concatenate(([0], steps)).astype(np.uint32), runs)

    def prepare(self, chunks):
        """Each of ``chunks`` (of ``_chunks``) with its words as vocabulary indexes: what ``train`` takes."""
        for chunk, records in chunks:
            yield chunk, records, kernels.index_words(chunk, self.key_to_index, len(self.touched))

    def train(self, client, chunks) -> None:
        """Train ``chunks`` (of ``prepare``) one after another. Each chunk's rows are pulled while the chunk
        before it trains, so a task waits for a round trip only if training a chunk is quicker than one."""
        previous = (0, {})  # the chunk before: its raw words and its update, which the next pull does not see
        chunks = iter(chunks)
        pending = self.request(client, next(chunks, None))
        while pending is not None:
            ahead = self.request(client, next(chunks, None))
            previous = self.train_chunk(client, *pending, previous)
            pending = ahead

    def request(self, client, prepared):
        """Send the pull of a chunk's rows and the global word count; what ``train_chunk`` needs of it."""
        if prepared is None:
            return None
        chunk, records, indexed = prepared  # indexed: (indexes, sentence ends)
        rows, cum_table = self.rows(indexed[0])
        if not len(rows["syn0"]):  # no word in the vocabulary: nothing to train, progress only
            rows = {}
        pull = client.pull_async(rows={**rows, PROGRESS: np.array([WORDS])})
        return chunk, records, indexed, rows, cum_table, pull

    def read_hot(self, client, rows) -> dict:
        """``{name: (positions in rows[name], current values)}`` of the hot rows among those trained, read in
        one round trip after training (none without hot rows)."""
        where = {}
        for name, mask in self.hot.items():
            wanted = rows.get(name)
            if wanted is not None:
                at = np.flatnonzero(mask[wanted])
                if len(at):
                    where[name] = at
        if not where:
            return {}
        now = client.pull(rows={name: rows[name][at] for name, at in where.items()})
        return {name: (at, now[name]) for name, at in where.items()}

    def train_chunk(self, client, chunk, records, indexed, rows, cum_table, pull, previous) -> tuple:
        """Train one chunk from its pulled rows and push their change with the progress counts.

        previous: ``(raw words, update)`` of the chunk before, pushed after this chunk's pull was sent, so
        missing from what it read. Its deltas are added to the rows as pulled: the task's own work is never
        lost between chunks. Returns this chunk's ``(raw words, update)``.
        """
        model, job, counts = self.model, self.job, self.counts
        raw = sum(map(len, chunk))
        pulled = pull.result()
        # Global progress when the pull was served, plus this task's previous chunk, not yet counted there.
        previous_words, previous_update = previous
        done = pulled.pop(PROGRESS)[0] - job["words_before"] + previous_words
        for name, wanted in rows.items():
            buffer, base = self.buffers[name], pulled[name]
            if wanted is None:
                buffer[:] = base
            else:
                kernels.scatter(buffer, wanted, base)
            if name in previous_update:
                # Added to every row the previous chunk changed, including rows this chunk does not read
                # (they are never read or pushed before their next pull overwrites them): cheaper than
                # finding the rows both chunks share. ``base`` becomes the rows as training starts.
                kernels.scatter_add(buffer, *previous_update[name])
                if wanted is None:
                    kernels.scatter_add(base, *previous_update[name])
                else:
                    kernels.gather(buffer, wanted, base)
        model.cum_table = cum_table
        start, end, total = job["start_alpha"], job["end_alpha"], job["total_words"]
        model.running_training_loss = 0.0
        started = time.perf_counter()
        indexes, ends = indexed
        for first, last, raw_words in _jobs(chunk, raw) if rows else ():  # no rows: no word in the vocabulary
            # gensim's schedule: linear in the raw words trained so far, by all workers, over all epochs
            alpha = max(end, start - (start - end) * done / total)
            if _train_batch is not None:
                offset = ends[first - 1] if first else 0
                counts["effective_words"] += _train_batch(model, indexes[offset:ends[last - 1]],
                                                          ends[first:last] - offset, alpha, self.work,
                                                          self.neu1, job["compute_loss"], self.paths)
            elif model.sg:
                counts["effective_words"] += train_batch_sg(model, chunk[first:last], alpha, self.work,
                                                            job["compute_loss"])
            else:
                counts["effective_words"] += train_batch_cbow(model, chunk[first:last], alpha, self.work,
                                                              self.neu1, job["compute_loss"])
            done += raw_words
        counts["kernel_seconds"] += time.perf_counter() - started
        counts["loss"] += model.running_training_loss
        update = {PROGRESS: progress_rows(records=records, words=raw, updates=1)}
        hot = self.read_hot(client, rows)
        for name, wanted in rows.items():
            buffer, base = self.buffers[name], pulled[name]
            if wanted is None:
                delta = buffer - base
            else:  # trained rows - pulled rows, with one temporary
                delta = np.empty_like(base)
                kernels.gather(buffer, wanted, delta)
                np.subtract(delta, base, out=delta)
                if name in hot:  # 1/N of the way from where the row is now to this task's value
                    at, now = hot[name]
                    delta[at] = job["hot_share"] * (buffer[wanted[at]] - now)
            changed = kernels.nonzero_rows(delta)  # e.g. words subsampling skipped: nothing to send
            if len(changed) == len(delta) and wanted is not None:
                update[name] = (wanted, delta)
            elif len(changed):
                update[name] = (changed if wanted is None else wanted[changed]), delta[changed]
        client.push(update)
        counts["records"] += records
        counts["words"] += raw
        counts["updates"] += 1
        return raw, update
