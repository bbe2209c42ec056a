"""deepdist.word2vec on local Spark: vocabulary from word counts, exact sparse deltas, quality against
single-process gensim, traffic, and the 2014 quick start through the generic API.

The corpus is the Wikipedia excerpt in gensim's own test data (about 437,000 words), so these tests need
nothing but the installed packages.
"""
import bz2
import gzip
import pickle
import re

import numpy as np
import pytest

pytest.importorskip("gensim")
from gensim.models import Doc2Vec, FastText, Word2Vec  # noqa: E402
from gensim.models.word2vec_inner import MAX_WORDS_IN_BATCH  # noqa: E402
from gensim.models.doc2vec import TaggedDocument  # noqa: E402
from gensim.test.utils import datapath  # noqa: E402

from deepdist import Client, DeepDist  # noqa: E402
from deepdist import kernels, word2vec  # noqa: E402
from deepdist.models import param_names, strip  # noqa: E402
from deepdist.spark import PROGRESS, PROGRESS_SIZE, RECORDS, WORDS, unpack_model  # noqa: E402
from deepdist.word2vec import (build_model, read_sentences, train, wikipedia_dump,  # noqa: E402
                                wikipedia_sentences)

HYPER = dict(vector_size=100, window=5, min_count=5, sg=1, negative=5, sample=1e-3, seed=1)
# 20 passes: gensim reaches WordSim353 ~0.54 on the excerpt (10 passes: ~0.39). Untrained vectors score
# 0.02 +- 0.06, so 90 % of the reference is far above noise.
EPOCHS = 20


def wordsim(wv) -> float:
    """Spearman correlation with WordSim353 (pairs with a word outside the vocabulary are skipped)."""
    return float(wv.evaluate_word_pairs(datapath("wordsim353.tsv"))[1][0])


@pytest.fixture(scope="module")
def sentences():
    return wikipedia_sentences()


@pytest.fixture(scope="module")
def corpus(spark_context, sentences):
    rdd = spark_context.parallelize(sentences, 2).cache()
    yield rdd
    rdd.unpersist()


def test_wikipedia_excerpt_is_paragraphs_of_tokens(sentences):
    assert 8000 < len(sentences) < 9000
    assert 400_000 < sum(map(len, sentences)) < 480_000
    assert all(5 <= len(s) <= 10_000 and all(isinstance(w, str) for w in s) for s in sentences[:100])


def multistream(dump, folder, pages_per_stream=20):
    """The dump re-compressed as Wikipedia's -multistream files are: its header, then one bz2 stream per
    ``pages_per_stream`` pages, then its footer, concatenated."""
    data = bz2.open(dump).read()
    starts = [match.start() for match in re.finditer(rb"  <page>", data)] + [data.rindex(b"</mediawiki>")]
    cuts = [0] + starts[:-1:pages_per_stream] + [starts[-1], len(data)]
    path = folder / "enwiki-pages-articles-multistream.xml.bz2"
    path.write_bytes(b"".join(bz2.compress(data[a:b]) for a, b in zip(cuts, cuts[1:])))
    return path


@pytest.mark.parametrize("streams", ["one", "multistream"])
def test_a_wikipedia_dump_read_by_spark_gives_the_same_sentences(spark_context, sentences, tmp_path, streams):
    # The excerpt is a real pages-articles dump, bz2-compressed: read in splits smaller than the file, so
    # pages cross split boundaries, as in a full dump read from HDFS.
    dump = datapath(word2vec.WIKIPEDIA_EXCERPT)
    if streams == "multistream":
        dump = multistream(dump, tmp_path)
    rdd = wikipedia_dump(spark_context, dump, split_bytes=300_000)
    assert rdd.getNumPartitions() >= 5
    assert rdd.collect() == sentences


def test_long_lines_are_cut_into_pieces_gensim_can_train(tmp_path):
    for path, opener in ((tmp_path / "corpus.txt", open), (tmp_path / "corpus.txt.gz", gzip.open)):
        with opener(path, "wt", encoding="utf-8") as f:
            f.write("a b c\n\n" + " ".join(["w"] * 25_000) + "\nlast  line\n")
        assert [len(s) for s in read_sentences(path)] == [3, 10_000, 10_000, 5_000, 2]
    # A task cuts long sentences the same way, and counts each sentence once.
    chunks = list(word2vec._chunks(iter([["x"] * 25_000, ["y"] * 3]), 10_000))
    assert [[len(s) for s in chunk] for chunk, _ in chunks] == [[10_000], [10_000], [5_000, 3]]
    assert [records for _, records in chunks] == [1, 0, 1]


def test_lines_not_split_into_tokens_are_refused(spark_context):
    # gensim would take each character of a str for a word, and train a model of letters.
    lines = spark_context.parallelize(["the cat sat on the mat"] * 10, 2)
    with pytest.raises(Exception, match="a sentence must be a list of tokens, got a str .*flatMap"):
        build_model(lines, min_count=1)
    with pytest.raises(TypeError, match="got a str"):
        list(word2vec._chunks(iter([["fine", "tokens"], "the cat sat"]), 10_000))
    # Any other sequence of tokens is trained as a list.
    chunks = list(word2vec._chunks(iter([("a", "tuple"), ["a", "list"]]), 10_000))
    assert chunks == [([["a", "tuple"], ["a", "list"]], 2)]


def test_train_refuses_what_it_cannot_train(corpus, sentences):
    with DeepDist({"syn0": np.zeros((3, 2), np.float32)}, progress=False) as dd:
        with pytest.raises(TypeError, match="needs a DeepDist serving a gensim Word2Vec"):
            train(dd, corpus)
    with pytest.raises(ValueError, match="no vocabulary yet: build it with"):
        DeepDist(Word2Vec(**HYPER))
    model = Word2Vec(**HYPER)
    model.build_vocab_from_freq({"a": 5, "b": 5})  # a vocabulary, but no corpus size for the schedule
    with DeepDist(model, progress=False) as dd:
        with pytest.raises(ValueError, match="no corpus_total_words"):
            train(dd, corpus)
    model = Word2Vec(**HYPER)
    model.build_vocab(sentences[:200])
    with DeepDist(model, progress=False) as dd:
        for bad in ({"epochs": 0}, {"chunk_words": 0}, {"negative_pool": 0}):
            with pytest.raises(ValueError, match="must be positive"):
                train(dd, corpus, **bad)
        assert dd.progress_counts().sum() == 0  # nothing ran
    with DeepDist(model, params=["syn0"], progress=False) as dd:  # syn1neg not served: tasks would fail
        with pytest.raises(ValueError, match=r"trains \['syn0', 'syn1neg'\]"):
            train(dd, corpus)
    nothing = Word2Vec(**dict(HYPER, negative=0, hs=0))  # gensim refuses to train it too
    nothing.build_vocab(sentences[:200])
    lone = Word2Vec(**dict(HYPER, negative=0, hs=1, min_count=1))  # a Huffman tree with no inner node
    lone.build_vocab([["only"]])
    for model, message in ((nothing, "hs=0 and negative=0"), (lone, "at least 2 words")):
        with DeepDist(model, progress=False) as dd:
            with pytest.raises(ValueError, match=message):
                train(dd, corpus)
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        word2vec.split_line("a b", max_tokens=0)
    # Word2Vec subclasses that train arrays of their own: their training would be lost.
    fasttext = FastText(vector_size=8, min_count=1)
    fasttext.build_vocab(sentences[:50])
    with pytest.raises(TypeError, match="not FastText: .*vectors_ngrams"):
        DeepDist(fasttext)
    doc2vec = Doc2Vec(vector_size=8, min_count=1)
    doc2vec.build_vocab([TaggedDocument(words, [i]) for i, words in enumerate(sentences[:50])])
    with pytest.raises(TypeError, match="not Doc2Vec: .* dv"):
        DeepDist(doc2vec)


def test_build_model_counts_in_spark_and_matches_gensim_build_vocab(spark_context, sentences, monkeypatch):
    import pyspark

    collected = []
    original = pyspark.RDD.collect

    def recording_collect(self):
        result = original(self)
        collected.append(result)
        return result

    monkeypatch.setattr(pyspark.RDD, "collect", recording_collect)
    # Three partitions, unlike the corpus fixture: partitioning must not change the model.
    model = build_model(spark_context.parallelize(sentences, 3), **HYPER)
    monkeypatch.undo()

    reference = Word2Vec(**HYPER)
    reference.build_vocab(sentences)
    assert model.wv.index_to_key == reference.wv.index_to_key  # same words, in the same rows
    for attribute in ("count", "sample_int"):
        np.testing.assert_array_equal(model.wv.expandos[attribute], reference.wv.expandos[attribute])
    np.testing.assert_array_equal(model.cum_table, reference.cum_table)
    np.testing.assert_array_equal(model.wv.vectors, reference.wv.vectors)  # same initial vectors
    assert model.corpus_count == reference.corpus_count == len(sentences)
    assert model.corpus_total_words == reference.corpus_total_words == sum(map(len, sentences))
    # The driver received one collect: a (word, (count, first position)) pair per retained word and the two
    # corpus totals. The corpus and the rare words' counts stayed in Spark.
    assert len(collected) == 1
    assert len(collected[0]) == len(model.wv) + 2
    assert all(isinstance(count, int) for _, (count, _) in collected[0])


def test_build_model_takes_any_tokens_gensim_takes(spark_context, sentences):
    """Token ids (integers, 0 and 1 among them) count as words, as gensim's build_vocab counts them: the
    corpus totals travel under keys no token can equal (integer keys 0 and 1 swallowed these tokens)."""
    index = {}
    ids = [[index.setdefault(word, len(index)) for word in sentence] for sentence in sentences[:300]]
    model = build_model(spark_context.parallelize(ids, 3), **HYPER)
    reference = Word2Vec(**HYPER)
    reference.build_vocab(ids)
    assert 0 in reference.wv.key_to_index and 1 in reference.wv.key_to_index
    assert model.wv.index_to_key == reference.wv.index_to_key
    assert (model.corpus_count, model.corpus_total_words) == (reference.corpus_count, reference.corpus_total_words)


def test_train_makes_the_models_own_epochs_by_default(spark_context, sentences):
    rdd = spark_context.parallelize(sentences[:300], 2)
    model = build_model(rdd, **dict(HYPER, epochs=3))
    with DeepDist(model, progress=False) as dd:
        summary = train(dd, rdd)
    assert summary["words"] == 3 * model.corpus_total_words


def test_a_second_word2vec_train_at_once_on_one_deepdist_is_refused(spark_context, sentences):
    """Its learning rate would decay by the first's words too: the server counts one word total."""
    import threading
    import time

    rdd = spark_context.parallelize(sentences[:300], 2)
    model = build_model(rdd, **dict(HYPER, epochs=30))
    with DeepDist(model, progress=False) as dd:
        first = {}
        thread = threading.Thread(target=lambda: first.update(train(dd, rdd)))
        thread.start()
        deadline = time.monotonic() + 60
        while id(dd) not in word2vec._TRAINING and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="a word2vec train is already running on this DeepDist"):
            train(dd, rdd, epochs=1)
        thread.join(300)
        assert not thread.is_alive() and first["words"] == 30 * model.corpus_total_words
        assert train(dd, rdd, epochs=1)["words"] == model.corpus_total_words  # one after the other: fine


def test_train_leaves_gensims_bookkeeping_as_gensims_train_does(spark_context, sentences):
    rdd = spark_context.parallelize(sentences[:300], 2)
    model = build_model(rdd, **dict(HYPER, epochs=5))
    with DeepDist(model, progress=False) as dd:
        summary = train(dd, rdd, epochs=2)
        empty = train(dd, spark_context.emptyRDD())
    assert (model.epochs, model.train_count) == (2, 2)  # the epochs trained last (as gensim sets them), two trains
    assert model.total_train_time == pytest.approx(summary["seconds"] + empty["seconds"])
    assert model.min_alpha_yet_reached == model.alpha  # the last train trained nothing: nothing decayed
    gensim = Word2Vec(sentences[:300], **dict(HYPER, epochs=2))
    model.min_alpha_yet_reached = None
    with DeepDist(model, progress=False) as dd:
        train(dd, rdd, epochs=2)
    assert model.min_alpha_yet_reached == pytest.approx(gensim.min_alpha_yet_reached, abs=2e-3)
    # A summary has every key its docstring names, also for an RDD with no partitions.
    assert set(summary) <= set(empty) and empty["words"] == empty["partitions"] == 0


def test_build_model_says_why_the_vocabulary_would_be_empty(spark_context):
    with pytest.raises(ValueError, match=r"RDD's 6 words \(in 2 sentences\) occurs min_count=5 times or more"):
        build_model(spark_context.parallelize([["a", "b", "c"], ["a", "b", "d"]], 2), min_count=5)
    with pytest.raises(ValueError, match="RDD's 0 words"):
        build_model(spark_context.parallelize([], 2))


class RecordingClient(Client):
    """A real Client that also remembers which rows it pulled and what it pushed."""

    def __init__(self, address):
        super().__init__(address, timeout=10)
        self.pushes, self.pulled = [], {}

    def pull_async(self, names=None, rows=None):
        pending = super().pull_async(names, rows)
        for name, shape in pending.shapes.items():
            wanted = rows.get(name) if isinstance(rows, dict) else rows
            self.pulled[name] = np.arange(shape[0]) if wanted is None else np.asarray(wanted)
        return pending

    def push(self, update, scale=1.0):
        self.pushes.append(update)
        super().push(update, scale)


class OtherTaskFirst(RecordingClient):
    """Its blocking pull (a trainer's read of its hot rows, after training) first lets another client push
    ``other`` to those rows, as another task would while this one trains."""

    def __init__(self, address, other):
        super().__init__(address)
        self.other = other

    def pull(self, names=None, rows=None):
        with Client(self.address, timeout=10) as another:
            another.push({name: (wanted, self.other[name][wanted]) for name, wanted in rows.items()})
        return super().pull(names, rows)


def test_with_hierarchical_softmax_hot_rows_move_toward_the_task_s_values(sentences, start_server,
                                                                          spark_context):
    # What train sets up beyond HS_TASKS_AT_ONCE tasks at once: each hot row goes hot_share of the way from
    # its value when the task has trained (others have changed it meanwhile) to the task's own value; every
    # other row gets the task's change added, as ever.
    model, names, server, trainer = one_task(spark_context, sentences, dict(sg=1, negative=0, hs=1), 10_000,
                                             None)
    hot = word2vec.hot_rows(model, 10_000)
    assert model.wv.key_to_index["the"] in hot["syn0"] and len(hot["syn0"]) < 0.05 * len(model.wv)
    assert 0 < len(hot["syn1"]) < 0.1 * len(model.wv)
    trainer = word2vec._Trainer(trainer.model, dict(trainer.job, hot_rows=hot, hot_share=0.25), partition=0)
    chunk, records = next(word2vec._chunks(iter(sentences[100:]), 10_000))
    ps = start_server({name: array.copy() for name, array in server.items()}, shards=2)
    other = {name: np.random.default_rng(1).normal(0, 0.1, server[name].shape).astype(np.float32)
             for name in names}
    client = OtherTaskFirst(ps.address, other)
    trainer.train(client, trainer.prepare([(chunk, records)]))
    client.close()
    for name in names:
        pushed = client.pushes[0][name][0]
        trained = trainer.buffers[name]
        is_hot = np.isin(pushed, hot[name])
        assert is_hot.any() and not is_hot.all()
        rows = pushed[is_hot]
        now = server[name][rows] + other[name][rows]
        np.testing.assert_allclose(ps.params[name][rows], now + 0.25 * (trained[rows] - now), rtol=0, atol=1e-6)
        rows = pushed[~is_hot]
        np.testing.assert_allclose(ps.params[name][rows], trained[rows], rtol=0, atol=1e-6)


def one_task(spark_context, sentences, config, chunk_words, negative_pool):
    """A small gensim model, the values a server would start from (nonzero everywhere, so that any row
    training touches would change), and a task's trainer for it, as ``_train_partition`` makes one."""
    model = Word2Vec(vector_size=16, window=5, min_count=5, sample=1e-3, seed=3, **config)
    model.build_vocab(sentences)
    names = param_names(model)
    rng = np.random.default_rng(0)
    server = {name: rng.normal(0, 0.1, (len(model.wv), 16)).astype(np.float32) for name in names}
    server[PROGRESS] = np.zeros(PROGRESS_SIZE)
    shell = unpack_model(spark_context.broadcast(pickle.dumps(strip(model, names))))
    job = {"chunk_words": chunk_words, "negative_pool": negative_pool if model.negative else None,
           "compute_loss": False, "start_alpha": 0.025, "end_alpha": 0.0001, "words_before": 0.0,
           "train_count": 0, "total_words": 1e6, "seed": 1, "epoch": 0}
    return model, names, server, word2vec._Trainer(shell, job, partition=0)


@pytest.mark.parametrize("config", [dict(sg=1, negative=5, hs=0), dict(sg=0, negative=5, hs=0),
                                    dict(sg=1, negative=0, hs=1), dict(sg=0, negative=3, hs=1)],
                         ids=["sg-negative", "cbow-negative", "sg-hs", "cbow-hs-negative"])
@pytest.mark.parametrize("negative_pool", [300, None], ids=["pool", "no-pool"])
@pytest.mark.parametrize("batch_loop", ["deepdist", "gensim"])
def test_a_chunk_changes_only_the_rows_it_pulls_and_pushes_exact_deltas(sentences, config, negative_pool,
                                                                        batch_loop, start_server, spark_context,
                                                                        monkeypatch):
    """With deepdist's batch loop (_word2vec_inner), and with gensim's own, which a task uses when the
    installed gensim's kernels do not match the build."""
    if word2vec._train_batch is None:  # DEEPDIST_PURE_PYTHON=1, or the build does not fit this gensim
        assert kernels.IMPLEMENTATION == "numpy", "deepdist._word2vec_inner did not load"
        if batch_loop == "deepdist":
            pytest.skip("DEEPDIST_PURE_PYTHON=1: tasks use gensim's own batch loop")
    if batch_loop == "gensim":
        monkeypatch.setattr(word2vec, "_train_batch", None)
    model, names, server, trainer = one_task(spark_context, sentences, config, 10_000, negative_pool)
    chunk, records = next(word2vec._chunks(iter(sentences[100:]), 10_000))
    ps = start_server({name: array.copy() for name, array in server.items()}, shards=2)
    client = RecordingClient(ps.address)
    trainer.train(client, trainer.prepare([(chunk, records)]))
    client.close()

    (update,) = client.pushes
    assert update[PROGRESS][1][RECORDS] == len(chunk)
    assert update[PROGRESS][1][WORDS] == sum(map(len, chunk))
    assert trainer.counts["effective_words"] > 0
    for name in names:
        rows, delta = update[name]
        pulled = client.pulled[name]
        assert np.all(np.diff(rows) > 0) and np.isin(rows, pulled).all()  # sorted, unique, pulled
        # server + pushed delta == what the task trained (to float32 rounding), on every row it pushed
        np.testing.assert_allclose(server[name][rows] + delta, trainer.buffers[name][rows], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ps.params[name][rows], trainer.buffers[name][rows], rtol=0, atol=1e-6)
        untouched = np.setdiff1d(np.arange(len(server[name])), rows)
        np.testing.assert_array_equal(ps.params[name][untouched], server[name][untouched])
        # Training touched no row it had not pulled: those would have moved away from zero.
        np.testing.assert_array_equal(np.flatnonzero(trainer.buffers[name].any(axis=1)), pulled)
    pulled = client.pulled
    assert len(pulled["syn0"]) == len({w for s in chunk for w in s if w in model.wv.key_to_index})
    if negative_pool and model.negative:
        # negatives come from the pool only: the chunk's words, at most negative_pool others, and row 0
        assert len(pulled["syn1neg"]) <= len(pulled["syn0"]) + negative_pool + 1
    elif model.negative:
        assert len(pulled["syn1neg"]) == len(model.wv)


@pytest.mark.parametrize("config", [dict(sg=1, negative=5, hs=0), dict(sg=0, negative=3, hs=1)],
                         ids=["sg-negative", "cbow-hs-negative"])
def test_a_chunk_of_several_gensim_batches_trains_the_same_with_either_batch_loop(sentences, config, start_server,
                                                                                 spark_context, monkeypatch):
    """A chunk over 10,000 words is trained as gensim would, in calls of at most 10,000 words: deepdist's
    batch loop takes each call's run of the chunk's word indexes, gensim's loop its sentences. From the same
    server values and seeds, the two give the same rows bit for bit."""
    chunk, records = next(word2vec._chunks(iter(sentences), 25_000))
    raw = sum(map(len, chunk))
    assert len(list(word2vec._jobs(chunk, raw))) == 3
    trained = {}
    for batch_loop in ("deepdist", "gensim"):
        if batch_loop == "gensim":
            monkeypatch.setattr(word2vec, "_train_batch", None)
        elif word2vec._train_batch is None:
            pytest.skip("DEEPDIST_PURE_PYTHON=1: tasks use gensim's own batch loop")
        model, names, server, trainer = one_task(spark_context, sentences, config, 25_000, 300)
        ps = start_server({name: array.copy() for name, array in server.items()}, shards=2)
        with Client(ps.address, timeout=10) as client:
            trainer.train(client, trainer.prepare([(chunk, records)]))
        trained[batch_loop] = {name: trainer.buffers[name].copy() for name in names}
        assert trainer.counts["effective_words"] > MAX_WORDS_IN_BATCH  # all three calls trained
    for name in trained["gensim"]:
        np.testing.assert_array_equal(trained["deepdist"][name], trained["gensim"][name])


def test_negative_pool_table_gives_width_to_pool_words_only(sentences, spark_context):
    model, _, _, trainer = one_task(spark_context, sentences, dict(sg=1, negative=5, hs=0), 10_000, 300)
    full = trainer.noise_table
    pool, table = trainer.draw_pool(300)
    assert table.dtype == np.uint32 and len(table) == len(full) and table[-1] == full[-1]
    width = np.diff(table.astype(np.int64), prepend=0)
    words, draws = np.unique(pool, return_counts=True)
    assert set(np.flatnonzero(width)) == set(words)  # the pool's words and nothing else can be drawn
    # each one's width in proportion to how often it was drawn (to rounding: +-1 per step)
    np.testing.assert_allclose(width[words], draws * (full[-1] / len(pool)), atol=2)
    # and gensim's draw, bisect_left(table, x) for x below table[-1], lands on pool words (or row 0)
    drawn = np.searchsorted(table, np.random.default_rng(1).integers(0, int(table[-1]), 10_000), side="left")
    assert np.isin(drawn, np.append(words, 0)).all()


@pytest.mark.parametrize("config, negative_pool", [(dict(sg=1, negative=5), 300), (dict(sg=1, negative=5), None),
                                                   (dict(sg=0, negative=3, hs=1), 300)],
                         ids=["pool", "no-pool", "cbow-hs-negative"])
def test_pulls_ahead_lose_none_of_the_tasks_own_work(sentences, start_server, spark_context, config, negative_pool):
    """Each chunk's rows are pulled while the chunk before trains, so the pull misses that chunk's push. The
    task adds it back: after many chunks its buffers hold exactly the server's rows, and the server holds
    the start plus every pushed delta."""
    _, names, server, trainer = one_task(spark_context, sentences, config, 2_000, negative_pool)
    chunks = list(word2vec._chunks(iter(sentences[:300]), 2_000))
    assert len(chunks) > 10
    ps = start_server({name: array.copy() for name, array in server.items()}, shards=2)
    client = RecordingClient(ps.address)
    trainer.train(client, trainer.prepare(chunks))
    client.close()

    assert len(client.pushes) == len(chunks)
    for name in names:
        expected = server[name].copy()
        for update in client.pushes:
            rows, delta = update[name]
            expected[rows] += delta
        np.testing.assert_allclose(ps.params[name], expected, rtol=0, atol=1e-5)
        last = client.pulled[name]  # the last chunk's rows: what the task trained them to is on the server
        np.testing.assert_allclose(trainer.buffers[name][last], ps.params[name][last], rtol=0, atol=1e-5)
    assert ps.params[PROGRESS][WORDS] == sum(sum(map(len, chunk)) for chunk, _ in chunks)


@pytest.fixture(scope="module")
def reference_score(sentences):
    """WordSim353 of single-process gensim trained with the same hyperparameters and epochs."""
    return wordsim(Word2Vec(sentences, workers=2, epochs=EPOCHS, **HYPER).wv)


def tasks_of_job_group(spark_context, group):
    tracker = spark_context.statusTracker()
    return sum(tracker.getStageInfo(stage).numTasks for job in tracker.getJobIdsForGroup(group)
               for stage in tracker.getJobInfo(job).stageIds)


# Both ways a job can run its epochs: the excerpt's partitions (about 220,000 words each) are small enough for
# their tasks to keep them and train every epoch on them, unless keep_words says no.
@pytest.mark.parametrize("keep_words, tasks", [(1_000_000, 2), (0, 2 * EPOCHS)],
                         ids=["epochs-in-task", "task-per-epoch"])
def test_word2vec_reaches_the_quality_of_single_process_gensim(corpus, sentences, reference_score, spark_context,
                                                               keep_words, tasks):
    expected = reference_score
    model = build_model(corpus, **HYPER)
    with DeepDist(model, progress=False) as dd:
        spark_context.setJobGroup(f"quality-{keep_words}", "word2vec quality test")
        try:
            summary = train(dd, corpus, epochs=EPOCHS, keep_words=keep_words)
        finally:
            spark_context.setLocalProperty("spark.jobGroup.id", None)
        assert dd.progress_counts()[WORDS] == EPOCHS * model.corpus_total_words
    assert tasks_of_job_group(spark_context, f"quality-{keep_words}") == tasks
    score = wordsim(model.wv)
    assert expected > 0.4, expected  # the reference learned something
    assert score >= 0.9 * expected, (score, expected)

    assert summary["partitions"] == 2 * EPOCHS
    assert summary["records"] == EPOCHS * len(sentences)
    assert summary["words"] == EPOCHS * model.corpus_total_words
    assert 0.5 * summary["words"] < summary["effective_words"] < summary["words"]  # subsampling on
    assert 0 < summary["kernel_seconds"] < summary["task_seconds"]
    # A reused Python worker unpickles the vocabulary once per job, not once per task (up to 40 tasks here;
    # 2 cores run 2 workers, and Spark may fork a third while one is being handed back).
    assert 1 <= summary["vocabulary_loads"] <= 4, summary["vocabulary_loads"]
    assert summary["tasks_at_once"] == 2  # both partitions' tasks, each keeping its partition for every epoch
    assert summary["chunk_words"] == word2vec.CHUNK_WORDS  # the default with negative sampling, 2 tasks
    assert summary["updates"] >= EPOCHS * model.corpus_total_words / word2vec.CHUNK_WORDS
    # Rows, not matrices. Here a 10,000-word chunk touches about a quarter of this small vocabulary (8,597
    # words); the share shrinks as the vocabulary grows (see the next test).
    dense = summary["updates"] * (model.wv.vectors.nbytes + model.syn1neg.nbytes)
    assert summary["bytes_sent"] < 0.4 * dense and summary["bytes_received"] < 0.4 * dense


def test_partitions_waiting_for_a_slot_are_not_kept_for_every_epoch(spark_context, sentences):
    # local[2] runs 2 tasks at once. Were each of 4 tasks to train all its epochs, the last two would start
    # after the first two had trained theirs, at a learning rate the first wave had already decayed.
    rdd = spark_context.parallelize(sentences[:400], 4)
    model = build_model(rdd, **HYPER)
    with DeepDist(model, progress=False) as dd:
        spark_context.setJobGroup("waves", "word2vec with more partitions than task slots")
        try:
            summary = train(dd, rdd, epochs=3)
        finally:
            spark_context.setLocalProperty("spark.jobGroup.id", None)
    assert tasks_of_job_group(spark_context, "waves") == 4 * 3  # one task per partition and epoch
    assert summary["tasks_at_once"] == 2  # local[2]'s slots, not the 12 tasks
    assert summary["chunk_words"] == word2vec.CHUNK_WORDS
    assert summary["words"] == 3 * model.corpus_total_words


def test_hierarchical_softmax_syncs_twice_as_often_by_default(spark_context, sentences):
    # Its Huffman-tree nodes near the root are changed by every task at once (word2vec.CHUNK_WORDS_HS).
    rdd = spark_context.parallelize(sentences[:1000], 2)
    model = build_model(rdd, **dict(HYPER, negative=0, hs=1))
    with DeepDist(model, progress=False) as dd:
        summary = train(dd, rdd, epochs=1)
    assert summary["tasks_at_once"] == 2
    assert summary["hot_rows"] == 0  # every change adds up, as with negative sampling
    assert word2vec.CHUNK_WORDS_HS < word2vec.CHUNK_WORDS
    assert summary["chunk_words"] == word2vec.CHUNK_WORDS_HS
    # A chunk holds at most chunk_words words, unless one sentence is longer (none of these is)
    assert max(map(len, sentences[:1000])) <= word2vec.CHUNK_WORDS_HS
    assert summary["words"] > 4 * word2vec.CHUNK_WORDS
    assert summary["updates"] >= summary["words"] / word2vec.CHUNK_WORDS_HS


def test_traffic_is_sparse(corpus):
    # Every word of the excerpt (min_count=1: 31,981 words), 5,000-word chunks: about 7 % of dense each way.
    model = build_model(corpus, **dict(HYPER, min_count=1))
    with DeepDist(model, progress=False) as dd:
        summary = train(dd, corpus, epochs=1, chunk_words=5_000, compute_loss=True)
    assert summary["loss"] > 0 and model.get_latest_training_loss() == summary["loss"]  # where gensim keeps it
    dense = summary["updates"] * (model.wv.vectors.nbytes + model.syn1neg.nbytes)
    assert summary["bytes_sent"] < 0.1 * dense, summary["bytes_sent"] / dense
    assert summary["bytes_received"] < 0.1 * dense, summary["bytes_received"] / dense


# The 2014 README's quick start, in gensim 4 names (examples/quickstart.py).
def gradient(model, sentences):  # executes on workers
    syn0, syn1neg = model.wv.vectors.copy(), model.syn1neg.copy()  # previous weights
    sentences = list(sentences)
    model.train(sentences, total_examples=len(sentences), epochs=1)
    return {'syn0': model.wv.vectors - syn0, 'syn1neg': model.syn1neg - syn1neg}


def descent(model, update):  # executes on the shards
    model.syn0 += update['syn0']
    model.syn1neg += update['syn1neg']


def test_quickstart_gradient_and_descent_train_word2vec(corpus, sentences):
    model = Word2Vec(vector_size=100, min_count=5, sg=1, negative=5, seed=1)
    model.build_vocab(sentences)
    untrained = wordsim(model.wv)
    with DeepDist(model, progress=False) as dd:
        for _ in range(5):
            summary = dd.train(corpus, gradient, descent, batch=200)
            assert summary["records"] == len(sentences)
    score = wordsim(model.wv)
    assert score > 0.2 and score > untrained + 0.15, (score, untrained)
    neighbours = [word for word, _ in model.wv.most_similar("france", topn=10)]
    assert {"spain", "italy", "germany", "england", "britain", "french", "paris", "europe"} & set(neighbours), \
        neighbours


def test_train_leaves_no_stale_unit_vectors_for_most_similar(spark_context, sentences):
    """gensim caches unit-norm vectors at the first most_similar; its own train drops them, and so must a
    train through DeepDist, by word2vec.train or the generic API, or the next query divides the new vectors
    by the old lengths."""
    rdd = spark_context.parallelize(sentences[:1000], 2)
    model = build_model(rdd, **HYPER)
    word = model.wv.index_to_key[10]
    with DeepDist(model, progress=False) as dd:
        for run in (lambda: train(dd, rdd, epochs=1), lambda: dd.train(rdd, add_ones_to_syn0)):
            model.wv.most_similar(word)  # caches the norms of the vectors as they are now
            run()
            assert np.linalg.norm(model.wv.get_vector(word, norm=True)) == pytest.approx(1.0, abs=1e-5)


def add_ones_to_syn0(model, data):
    list(data)
    return {"syn0": np.ones_like(model.wv.vectors)}


def test_each_train_call_draws_new_random_numbers_and_a_rerun_repeats_them(spark_context, sentences):
    """Subsampling, window sizes and negatives come from seeds that change from one train call to the next
    (as gensim's model.random carries on), not the same draws every call; a rerun draws what the run did."""
    rdd = spark_context.parallelize(sentences[:1000], 2)
    kept = []
    for _ in range(2):
        model = build_model(rdd, **HYPER)  # sample=1e-3: effective_words counts the words subsampling kept
        with DeepDist(model, progress=False) as dd:
            kept.append([train(dd, rdd, epochs=1)["effective_words"] for _ in range(2)])
    assert kept[0][0] != kept[0][1]  # the second call dropped other words than the first
    assert kept[1] == kept[0]


def test_a_model_trained_again_in_a_new_block_draws_new_random_numbers(spark_context, sentences):
    """A new DeepDist's server counts words from 0 again: the model's own train count keeps the draws of one
    block from repeating those of the block before (checkpointing epoch by epoch, say)."""
    rdd = spark_context.parallelize(sentences[:1000], 1)
    model = build_model(rdd, **HYPER)
    kept = []
    for _ in range(3):
        with DeepDist(model, progress=False) as dd:
            kept.append(train(dd, rdd, epochs=1)["effective_words"])
    assert len(set(kept)) > 1, kept  # the same three counts: the same words kept each time


def test_a_train_without_compute_loss_leaves_no_loss_behind(spark_context, sentences):
    """As gensim's own train: the loss of a train that did not compute it is 0, not the train before's."""
    rdd = spark_context.parallelize(sentences[:300], 2)
    model = build_model(rdd, **HYPER)
    with DeepDist(model, progress=False) as dd:
        train(dd, rdd, epochs=1, compute_loss=True)
        assert model.compute_loss and model.get_latest_training_loss() > 0
        train(dd, rdd, epochs=1)
    assert not model.compute_loss and model.get_latest_training_loss() == 0.0


def test_a_wikipedia_dump_and_a_text_file_are_read_plain_or_compressed(sentences, tmp_path):
    with bz2.open(datapath(word2vec.WIKIPEDIA_EXCERPT), "rb") as f:
        dump = f.read()
    (tmp_path / "dump.xml").write_bytes(dump)
    with gzip.open(tmp_path / "dump.xml.gz", "wb") as f:
        f.write(dump)
    for name in ("dump.xml", "dump.xml.gz"):
        assert wikipedia_sentences(tmp_path / name) == sentences
    text = "".join(" ".join(sentence) + "\n" for sentence in sentences[:50])
    with bz2.open(tmp_path / "corpus.txt.bz2", "wt", encoding="utf-8") as f:
        f.write(text)
    assert list(read_sentences(tmp_path / "corpus.txt.bz2")) == sentences[:50]


def test_epochs_over_an_rdd_with_a_partitioner_are_tasks_of_their_own(spark_context, sentences):
    # Spark unions RDDs that share a partitioner partition by partition: 2 tasks for 3 epochs, each counted
    # as epoch 0, unless train drops the partitioner first.
    keyed = spark_context.parallelize(list(enumerate(sentences[:400])), 2).partitionBy(2)
    rdd = keyed.mapPartitions(lambda pairs: (sentence for _, sentence in pairs), preservesPartitioning=True)
    assert rdd.context.union([rdd] * 3).getNumPartitions() == 2
    model = build_model(rdd, **HYPER)
    with DeepDist(model, progress=False) as dd:
        summary = train(dd, rdd, epochs=3, keep_words=0)  # no kept partitions: one task per partition and epoch
    assert summary["partitions"] == 2 * 3
    assert summary["words"] == 3 * model.corpus_total_words
