"""word2vec on Spark with deepdist: build the vocabulary with Spark, train with every executor core.

    python examples/word2vec.py                  # the Wikipedia excerpt in gensim's test data, local[2]
    python examples/word2vec.py corpus.txt.gz    # one sentence per line (any path Spark can read)
    python examples/word2vec.py enwiki-latest-pages-articles.xml.bz2   # a Wikipedia dump, parsed by executors
    spark-submit --master spark://host:7077 --archives env.tar.gz#environment \
        --conf spark.pyspark.python=./environment/bin/python \
        --conf spark.pyspark.driver.python=/path/to/env/bin/python \
        examples/word2vec.py hdfs:///corpus    # a cluster (docs/cluster.md, section 3)

On a cluster the executors need deepdist's compiled extension: docs/cluster.md packs a virtual environment
holding its wheel (scripts/pack_env.sh) for --archives; without it they run whatever python3 is on their PATH.

DeepDist prints a progress line while each pass runs. On 2 cores the default run takes about a minute.
"""
import os
import sys

from pyspark import SparkConf, SparkContext

from deepdist import DeepDist
from deepdist.spark import deal
from deepdist.word2vec import build_model, split_line, train, wikipedia_dump, wikipedia_sentences

EPOCHS = 10  # the excerpt is small (437,000 words): several passes give sensible neighbours
if sys.argv[1:] in (["-h"], ["--help"]):
    print(__doc__)
    sys.exit(0)
if len(sys.argv) > 2:
    sys.exit(f"one corpus path at most, got {len(sys.argv) - 1} arguments\n{__doc__}")

conf = SparkConf().setAppName("deepdist-word2vec").set("spark.ui.showConsoleProgress", "false")  # DeepDist
# prints its own progress line. Under spark-submit (which starts the JVM first and says so in
# PYSPARK_GATEWAY_PORT) the master and the executors' Python come from its command line; run directly with
# python, this is a local[2] job whose executors run this interpreter, which has deepdist.
if "PYSPARK_GATEWAY_PORT" not in os.environ:
    conf.setMaster("local[2]")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
sc = SparkContext(conf=conf)
sc.setLogLevel("ERROR")

if len(sys.argv) > 1:  # read by the executors, never by the driver
    if ".xml" in os.path.basename(sys.argv[1]):  # enwiki-*-pages-articles*.xml*.bz2
        corpus = wikipedia_dump(sc, sys.argv[1])  # a sentence per paragraph of each article
    else:
        corpus = sc.textFile(sys.argv[1]).flatMap(split_line)
else:
    corpus = sc.parallelize(wikipedia_sentences())
# Tasks that train at once should read similar text. Spark runs tasks in partition order, so with many
# partitions the running ones hold neighbouring text; with no more partitions than cores (a small file, a .gz,
# parallelize) each would train one distant part of the corpus: deal the sentences round-robin instead.
if corpus.getNumPartitions() <= sc.defaultParallelism:
    corpus = deal(corpus, sc.defaultParallelism)  # rdd.repartition, without unpickling every sentence
corpus = corpus.cache()  # one pass to count words, then EPOCHS passes to train

model = build_model(corpus, vector_size=100, window=5, min_count=5)  # a gensim Word2Vec, skip-gram
print(f"{model.corpus_count:,} sentences, {model.corpus_total_words:,} words, vocabulary {len(model.wv):,}")
with DeepDist(model) as dd:  # the parameter server's shards run on the driver
    summary = train(dd, corpus, epochs=EPOCHS)
print(f"trained {summary['words']:,} words in {summary['seconds']:.1f} s: "
      f"{summary['words'] / summary['seconds']:,.0f} words/s")

# model is a plain gensim Word2Vec again: save it, or query it
for word in ["france", "music", "war", "computer", "river", "god"]:
    if word in model.wv:
        print(f"{word:>9}: {', '.join(w for w, _ in model.wv.most_similar(word, topn=8))}")
sc.stop()
