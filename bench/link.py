"""word2vec through a driver link of limited bandwidth: deepdist at float32 and over the float16 wire.

deepdist's shards run on the driver, so every task's pulls and pushes cross the driver's network link, and
that link bounds a job at about (rate each way) / (bytes per trained word each way) words/s
(docs/scaling.md). This measures the bound instead of assuming it. deepdist's word2vec (bench/word2vec.py's
own runs) trains on local Spark inside a private network namespace whose loopback holds the traffic to the
shards' ports and the traffic from them to RATE each, as a full-duplex link would; Spark's own traffic
passes unshaped. Every rate runs at float32 and over the float16 wire, interleaved with the same job on the
unshaped loopback in the same run. Per training core, a 1 Gbit/s link feeding this machine's 2 cores is
a 10 Gbit/s link feeding 20.

    sudo python bench/link.py                     # the excerpt, 10 epochs, hierarchical softmax; 1gbit, 500mbit
    sudo python bench/link.py --corpus ../shared/corpus/dictionaries.txt.gz --systems deepdist,deepdist-hs

It takes bench/word2vec.py's options (corpus, epochs, cores, chunk words, seed, repeat, ...) for the deepdist
systems, plus ``--rates``. It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) for ``ip netns`` and ``tc``, and the
kernel's htb qdisc and u32 classifier: without them it says what is missing and exits with status 2. The
namespace, and any process left in it, is removed at the end whatever happens.

How the link is made: an htb qdisc at the root of the namespace's loopback, one class per direction at
RATE (``rate`` = ``ceil``), and u32 filters putting packets to the shards' ports (``dport``) in one class and
packets from them (``sport``) in the other; packets no filter matches bypass the classes (htb ``default 0``).
The shards bind fixed ports (``spark.deepdist.port``) so that the filters can name them. Each class's byte
count is reported beside the clients' own, so a run shows the shaped traffic was deepdist's.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine_info, print_table, write_json  # noqa: E402
import word2vec as w2v  # noqa: E402

SYSTEMS = ("deepdist", "deepdist-hs")
PORT_BASE = 24000  # the shards' first port: below the kernel's ephemeral range, so no client socket lands on it
PORT_MASK = 0xFFFC  # the filters match PORT_BASE to PORT_BASE + 3: room for up to 4 shards
SHARDS = 2          # bench/word2vec.py's deepdist runs
TO_SHARDS, FROM_SHARDS = "1:1", "1:2"  # the htb classes
MIN_BURST = 256 * 1024  # bytes: htb must be able to send one loopback packet (up to 64 KiB with GSO) at once


def command(*args, check=True, timeout=60) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {result.stderr.strip()}")
    return result


def rate_bits(rate: str) -> float:
    """tc's rate syntax (``1gbit``, ``500mbit``, ``100kbit``, ``2e9bit``) in bits per second."""
    match = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([kmgt]?)bit", rate.strip().lower())
    if not match:
        raise ValueError(f"a rate is a number and kbit, mbit, gbit or bit (tc's syntax), got {rate!r}")
    return float(match.group(1)) * 1000 ** " kmgt".index(match.group(2) or " ")


# -- the link ----------------------------------------------------------------------------------------------
class Link:
    """The shaping on this namespace's loopback: ``shape(rate)`` holds the shards' traffic to ``rate`` each
    way, ``clear()`` removes it; ``bytes()`` is what each direction's class has carried since ``shape``."""

    def __init__(self, port_base=PORT_BASE):
        self.port_base = port_base
        self.rate = None

    def shape(self, rate: str) -> None:
        self.clear()
        burst = max(MIN_BURST, int(rate_bits(rate) / 8 * 0.002))  # 2 ms of traffic, at least MIN_BURST
        command("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0")
        for classid, match in ((TO_SHARDS, "dport"), (FROM_SHARDS, "sport")):
            command("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", classid, "htb", "rate", rate,
                    "ceil", rate, "burst", burst, "cburst", burst, "quantum", 200_000)
            command("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", 1, "u32",
                    "match", "ip", match, self.port_base, hex(PORT_MASK), "flowid", classid)
        self.rate = rate

    def clear(self) -> None:
        command("tc", "qdisc", "del", "dev", "lo", "root", check=False)  # none there: an error, ignored
        self.rate = None

    def bytes(self) -> dict:
        """``{"to_shards": bytes, "from_shards": bytes}`` the classes carried (zeros when unshaped)."""
        if self.rate is None:
            return {"to_shards": 0, "from_shards": 0}
        text = command("tc", "-s", "class", "show", "dev", "lo").stdout
        sent = dict(re.findall(r"class htb (\S+) .*?\n\s*Sent (\d+) bytes", text))
        return {"to_shards": int(sent.get(TO_SHARDS, 0)), "from_shards": int(sent.get(FROM_SHARDS, 0))}


def shaping_unavailable():
    """None if this process can make a namespace and shape its loopback as Link does, else why not."""
    probe = f"deepdist-link-probe-{os.getpid()}"
    try:
        made = command("ip", "netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"ip netns is unavailable: {error}"
    if made.returncode != 0:
        return f"cannot create a network namespace (needs root): {made.stderr.strip()}"
    try:
        inside = ("ip", "netns", "exec", probe)
        steps = [("ip", "link", "set", "lo", "up"),
                 ("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0"),
                 ("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "1gbit"),
                 ("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                  "match", "ip", "dport", str(PORT_BASE), hex(PORT_MASK), "flowid", "1:1")]
        for step in steps:
            result = command(*inside, *step, check=False)
            if result.returncode != 0:
                return f"`{' '.join(step)}` failed (the kernel's htb qdisc and u32 filter are needed): " \
                       f"{result.stderr.strip()}"
        return None
    finally:
        command("ip", "netns", "del", probe, check=False)


# -- outside the namespace: make it, run inside it, remove it ------------------------------------------------
def run_outside(argv) -> int:
    problem = shaping_unavailable()
    if problem:
        print(f"bench/link.py: {problem}", file=sys.stderr)
        return 2
    name = f"deepdist-link-{os.getpid()}"
    command("ip", "netns", "add", name)
    try:
        command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__, "--inside", name,
                               *argv]).returncode
    finally:
        for pid in command("ip", "netns", "pids", name, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        command("ip", "netns", "del", name, check=False)


# -- inside it ----------------------------------------------------------------------------------------------
def run_inside(parser, args) -> int:
    systems = w2v.settle(parser, args, known=SYSTEMS)
    rates = [r.strip() for r in args.rates.split(",") if r.strip()]
    for rate in rates:
        try:
            rate_bits(rate)
        except ValueError as error:
            parser.error(str(error))
    sentences = w2v.reorder(w2v.load_corpus(args.corpus, args.max_words), args.order, args.seed)
    bench = w2v.Bench(args, sentences)
    corpus = str(args.corpus) if args.corpus else "gensim Wikipedia excerpt (paragraphs)"
    print(f"corpus: {corpus}: {bench.words:,} words x {args.epochs} epoch(s); links: unshaped, "
          f"{', '.join(rates)}", flush=True)
    link = Link()
    runs = []
    try:
        bench.start_spark({"spark.deepdist.port": str(PORT_BASE)})
        for round_ in range(args.repeat):  # interleaved, so that drifting machine load falls on all alike
            for name in systems:
                for rate in [None] + rates:
                    for wire in (None, "float16"):
                        if rate is None:
                            link.clear()
                        else:
                            link.shape(rate)
                        args.wire_dtype = wire
                        print(f"link {rate or 'unshaped'}, wire {wire or 'float32'}:", flush=True)
                        run = bench.run(name)
                        runs.append(dict(run, round=round_, link=rate, wire_dtype=wire or "float32",
                                         through_link=link.bytes()))
    finally:
        link.clear()
        bench.stop_spark()
    rows = [dict(w2v.combine([r for r in runs if (r["system"], r["link"], r["wire_dtype"]) == key]),
                 link=key[1], wire_dtype=key[2])
            for key in dict.fromkeys((r["system"], r["link"], r["wire_dtype"]) for r in runs)]
    print()
    print(f"word2vec through a driver link, {corpus}, {bench.words:,} words x {args.epochs} epoch(s), "
          f"{args.cores} tasks at once, {SHARDS} shards")
    print_table(["system", "link each way", "wire", "words/s", "vs unshaped float32", "B/word to shards",
                 "B/word from shards", "link's bound", "reached", "WS353", "analogy %", "shaped MB"],
                [table_row(row, rows) for row in rows])
    write_json(args.json, {"machine": machine_info(),
                           "config": {"corpus": corpus, "words": bench.words, "epochs": args.epochs,
                                      "cores": args.cores, "chunk_words": args.chunk_words, "rates": rates,
                                      "seed": args.seed, "repeat": args.repeat, "systems": systems,
                                      "port_base": PORT_BASE, "shards": SHARDS,
                                      # where it ran: the namespace (removed at the end) and the process
                                      # whose pid names the shards' shared memory
                                      "namespace": args.inside, "pid": os.getpid()},
                           "results": rows, "runs": runs})
    return 0 if all("error" not in row for row in rows) else 1


def per_word(row) -> tuple:
    """Bytes per trained word the tasks sent to the shards and received from them (the clients' counts)."""
    summary = row["details"]["summary"]
    return summary["bytes_sent"] / row["words"], summary["bytes_received"] / row["words"]


def table_row(row, rows) -> list:
    label = [row["system"], row["link"] or "unshaped", row["wire_dtype"]]
    if "error" in row:
        return label + ["error"] * 9
    base = next((r for r in rows if (r["system"], r["link"], r["wire_dtype"]) == (row["system"], None, "float32")
                 and "error" not in r), None)
    to_shards, from_shards = per_word(row)
    if row["link"] is None:
        bound = reached = ""
    else:
        words_per_s = rate_bits(row["link"]) / 8 / max(to_shards, from_shards)  # bytes/s each way / bytes/word
        bound, reached = f"{words_per_s / 1e3:,.0f}k", f"{row['words_per_s'] / words_per_s:.2f}"
    shaped = sum(row["through_link"].values()) / 1e6
    q = row["quality"]
    return label + [f"{row['words_per_s'] / 1e3:,.0f}k",
                    f"{row['words_per_s'] / base['words_per_s']:.2f}x" if base else "n/a",
                    f"{to_shards:,.0f}", f"{from_shards:,.0f}", bound, reached,
                    f"{q['wordsim353_spearman']:.3f}", f"{100 * q['analogy_accuracy']:.1f}",
                    f"{shaped:,.0f}" if row["link"] else ""]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = w2v.make_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(systems="deepdist-hs", json=HERE / "results" / "link.json")
    parser.add_argument("--rates", default="1gbit,500mbit",
                        help="the link's rate each way, comma-separated, in tc's syntax (default: %(default)s)")
    # The namespace's name, when the script runs itself inside the namespace it made.
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.wire_dtype is not None:
        parser.error("--wire-dtype: every rate runs at float32 and over the float16 wire")
    if args.inside is None:
        return run_outside(argv)
    return run_inside(parser, args)


if __name__ == "__main__":
    sys.exit(main())
