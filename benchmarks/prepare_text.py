"""How long `dl train --text FILE` takes to prepare a large text, and the memory it needs: per
``--token`` kind, in a fresh process each, the wall time of reading, fitting the vocabulary,
encoding, caching and splitting (``dl.cli.train.load_data``), the peak resident memory above
what the process held before, and the time of the same preparation on a resume (the ids mapped
from the cache, the tokenizer the run's). Not a test.

    python benchmarks/prepare_text.py BIG.txt [--token char,byte,word,whitespace]

A 100 MB text: ``for i in $(seq 560); do cat timemachine.txt; done > /tmp/big.txt``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, resource, sys, time
from dl.cli import train
from dl.data import tokenizers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
settings = train.resolve({"text": sys.argv[1], "token": sys.argv[2]})
started = time.perf_counter()
data = train.load_data(settings)
prepared = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
again = train.load_data(settings, tokenizers.from_dict(data.tokenizer.to_dict()))
resumed = time.perf_counter() - started
print(json.dumps({"seconds": prepared, "resume_seconds": resumed,
                  "peak_mib": (peak - before) / 1024, "tokens": len(data.train) + len(data.val)
                  + len(data.test), "vocab": len(data.tokenizer)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", help="the text file to prepare")
    parser.add_argument("--token", default="char,byte,word,whitespace", help="kinds to measure")
    args = parser.parse_args()
    size = os.path.getsize(args.text) / 2**20
    print(f"{args.text}: {size:,.1f} MiB")
    print("| --token | tokens | vocabulary | prepare (s) | peak memory (MiB) | resume (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in args.token.split(","):
        with tempfile.TemporaryDirectory() as cache:  # a cold cache: tokenized from scratch
            env = dict(os.environ, DL_DATA_DIR=cache, OMP_NUM_THREADS="1")
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, args.text, kind],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            r = json.loads(out)
            print(
                f"| {kind} | {r['tokens']:,} | {r['vocab']:,} | {r['seconds']:.1f} | "
                f"{r['peak_mib']:,.0f} | {r['resume_seconds']:.2f} |  "
                f"({time.perf_counter() - started:.1f} s with start-up)",
                flush=True,
            )


if __name__ == "__main__":
    main()
