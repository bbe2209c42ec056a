"""Draw bench/word2vec.py's results: words/s and WordSim353 Spearman per system, two bar panels.

    python bench/plot_word2vec.py                                   # bench/results/word2vec.json -> .png
    python bench/plot_word2vec.py results.json --out results.png
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
# negative sampling systems in blue shades, MLlib-like (hierarchical softmax) ones in orange, 2014 in grey
COLOURS = {"deepdist": "#1f77b4", "gensim": "#6baed6", "legacy2014": "#7f7f7f", "legacy2014-fine": "#bdbdbd",
           "deepdist-hs": "#d95f02", "gensim-hs": "#fdae6b", "mllib": "#e6550d"}


def plot(results, out):
    """``results``: the payload bench/word2vec.py writes, or the path of its JSON. Returns ``out``."""
    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text())
    rows = [row for row in results["results"] if "error" not in row]
    names = [row["system"] for row in rows]
    colours = [COLOURS.get(name, "#31a354") for name in names]
    speed = [row["words_per_s"] / 1e3 for row in rows]
    quality = [row["quality"]["wordsim353_spearman"] for row in rows]
    config = results["config"]

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    bars = left.bar(names, speed, color=colours)
    left.bar_label(bars, labels=[f"{value:,.0f}k" for value in speed], fontsize=8)
    left.set_ylabel("thousand raw words / s (training wall time)")
    left.set_title("training speed")
    bars = right.bar(names, quality, color=colours)
    right.bar_label(bars, labels=[f"{value:.3f}" for value in quality], fontsize=8)
    right.set_ylabel("Spearman rank correlation")
    oov = sorted({round(row["quality"]["wordsim353_oov_pct"]) for row in rows})
    right.set_title(f"WordSim353 (pairs out of vocabulary: {', '.join(f'{v}%' for v in oov)})")
    right.axhline(0, color="black", linewidth=0.5)
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=30)
        for label in axis.get_xticklabels():
            label.set_horizontalalignment("right")
    figure.suptitle(f"word2vec on {config['corpus']}: {config['words']:,} words x {config['epochs']} epoch(s), "
                    f"d=100, window 5, min_count {config['common']['min_count']} (blue: negative 5, orange: hierarchical softmax)", fontsize=9)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="?", type=Path, default=HERE / "results" / "word2vec.json")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: the JSON's name, .png)")
    args = parser.parse_args(argv)
    print(f"wrote {plot(args.json, args.out or args.json.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
