"""The 2014 DeepDist quick start, for gensim 4: word2vec through the generic gradient/descent API.

    python examples/quickstart.py

The code is the original README's, with gensim 4 names: ``model.wv.vectors`` is the old ``model.syn0``,
and skip-gram trains ``syn1neg`` (negative sampling) where the 2014 default trained ``syn1``. DeepDist still
calls them 'syn0' and 'syn1neg'. Two changes from 2014 matter for quality:
- ``batch=200``: each Spark task pulls the model, trains 200 sentences and pushes the change (Downpour
  SGD). In 2014 a task trained its whole partition from one snapshot. When workers train that long without
  syncing, their summed deltas wreck the model.
- several passes: the corpus here is a small Wikipedia excerpt (about 437,000 words).
``deepdist.word2vec.train`` runs the same job faster. It moves only the rows each batch touches, and decays
one learning rate by global progress: see examples/word2vec.py.
"""
import os
import sys

from gensim.models import Word2Vec
from pyspark import SparkConf, SparkContext

from deepdist import DeepDist
from deepdist.word2vec import wikipedia_sentences

conf = SparkConf().setAppName("deepdist-quickstart").set("spark.ui.showConsoleProgress", "false")
if "PYSPARK_GATEWAY_PORT" not in os.environ:  # run with python, not spark-submit: see examples/word2vec.py
    conf.setMaster("local[2]")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors run this interpreter, which has deepdist
sc = SparkContext(conf=conf)
sc.setLogLevel("ERROR")
# In 2014: corpus = sc.textFile('enwiki').map(lambda s: s.split())
corpus = sc.parallelize(wikipedia_sentences()).cache()


def gradient(model, sentences):  # executes on workers
    syn0, syn1neg = model.wv.vectors.copy(), model.syn1neg.copy()  # previous weights
    sentences = list(sentences)
    model.train(sentences, total_examples=len(sentences), epochs=1)
    return {'syn0': model.wv.vectors - syn0, 'syn1neg': model.syn1neg - syn1neg}


def descent(model, update):  # executes on the parameter server (each shard, on the rows it owns)
    model.syn0 += update['syn0']
    model.syn1neg += update['syn1neg']


# In 2014 Word2Vec(corpus.collect()) built the vocabulary (and trained once) on the driver. Collecting is
# fine for this excerpt. For a real corpus, deepdist.word2vec.build_model(corpus) collects only word counts.
model = Word2Vec(vector_size=100, min_count=5, sg=1, negative=5)
model.build_vocab(corpus.collect())

with DeepDist(model) as dd:
    for epoch in range(10):
        dd.train(corpus, gradient, descent, batch=200)
    print(dd.model.wv.most_similar(positive=['woman', 'king'], negative=['man']))
    for word in ['france', 'music', 'war']:
        print(word, [w for w, _ in dd.model.wv.most_similar(word, topn=8)])
sc.stop()
