"""Compare the ingest hot path of this tree with another commit's on a large mutated corpus.

    .venv/bin/python scripts/hotpath_diff.py --ref <commit> [--messages N] [--seed S]
    .venv/bin/python scripts/hotpath_diff.py --golden tests/ingest/data/hotpath_golden.json.gz \
        --ref <commit> --messages 6000       # write the equivalence test's reference digests

The corpus is `tests/ingest/hotpath_corpus.py`. The other commit's `maillage/` is extracted with
`git archive` to a temporary directory and run in a subprocess that imports it instead of the
editable install; every outcome (DLQ reason and detail, or each record's topic kind, key, value
bytes and reading count) must be identical.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def dump(n: int, seed: int, out: Path) -> None:
    """Run the corpus through whichever `maillage` is first on the path; one JSON line each."""
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path.insert(0, str(ROOT / "tests" / "ingest"))
    from datetime import timedelta

    import hotpath_corpus as corpus

    import maillage
    from maillage.ingest.validate import Ingest

    sys.stdout.write(f"{out.name}: {maillage.__file__}\n")
    ingest = Ingest(corpus.registry(), max_future=timedelta(minutes=5))
    with out.open("wb") as f:
        for topic, payload, received in corpus.messages(n, seed):
            entry = corpus.outcome_entry(ingest.convert(topic, payload, received))
            f.write(orjson.dumps(entry) + b"\n")


def run_dump(tree: Path, n: int, seed: int, out: Path) -> None:
    """`dump` in a subprocess importing the `maillage` package found in `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, __file__, "--dump", str(out), "--messages", str(n),
                    "--seed", str(seed)], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", help="the commit to compare with (default: none, just dump)")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--golden", type=Path, help="write the ref's digests there, compare nothing")
    args = parser.parse_args()
    if args.dump is not None:
        dump(args.messages, args.seed, args.dump)
        return
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "ref"
        old_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, "maillage"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        old = Path(tmp) / "ref.jsonl"
        run_dump(old_tree, args.messages, args.seed, old)
        if args.golden is not None:
            write_golden(old, args.golden, args.messages, args.seed, args.ref)
            return
        new = Path(tmp) / "new.jsonl"
        run_dump(ROOT, args.messages, args.seed, new)
        compare(old, new, args.messages, args.seed)


def write_golden(results: Path, golden: Path, n: int, seed: int, ref: str) -> None:
    """The digests (and rejection reasons) the equivalence test checks against."""
    sys.path.insert(0, str(ROOT / "tests" / "ingest"))
    import hotpath_corpus as corpus

    entries = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    doc = {"messages": n, "seed": seed, "ref": ref,
           "outcomes": [[corpus.digest(e), e[2] if e[0] == "rejected" else "accepted"]
                        for e in entries]}
    golden.write_bytes(gzip.compress(orjson.dumps(doc), mtime=0))
    sys.stdout.write(f"wrote {golden} ({len(entries)} outcomes)\n")


def compare(old: Path, new: Path, n: int, seed: int) -> None:
    """Print the first differences (with their message); exit 1 when there is one."""
    sys.path.insert(0, str(ROOT / "tests" / "ingest"))
    from collections import Counter

    import hotpath_corpus as corpus

    msgs = corpus.messages(n, seed)

    differ = 0
    kinds: Counter[str] = Counter()
    with old.open("rb") as a, new.open("rb") as b:
        for i, (x, y, msg) in enumerate(zip(a, b, msgs, strict=True)):
            ex = orjson.loads(x)
            kinds[ex[2] if ex[0] == "rejected" else "accepted"] += 1
            if x != y:
                differ += 1
                if differ <= 20:
                    sys.stdout.write(f"message {i}: {msg!r:.600}\n  ref: {x.decode()[:600]}\n"
                                     f"  new: {y.decode()[:600]}\n")
    total = sum(kinds.values())
    sys.stdout.write(f"{total} messages, {differ} differ; outcomes: "
                     f"{', '.join(f'{k}={v}' for k, v in kinds.most_common())}\n")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
