"""When the line reader's reading wins over the reading by cuts (read/line.py), chosen on validation:

    python benchmarks/choose_line_rule.py [--n 300] [--pages 60] [--line PATH]

Each validation number (data/lines.py's validation family: ordinary gaps, touching; and the
robustness suite's own numbers, MNIST's 20-px box side by side, data/synth.py), each number on 60
validation pages and 360 held-out non-digits (negatives.evaluation, seed 777, 40 of each
kind) is read once by cuts (read.number.read_by_cuts) and once by the line reader at PATH (the
shipped assets/line.onnx by default); then every rule of the grid is scored from those readings.
A rule is (doubt: a reading by cuts with a digit under it is read again, sure: the line reader's
least digit probability to replace a reading, answer: the same where the cuts declined a part).
Printed per rule: exact and wrong with gaps, touching and the suite's numbers, numbers of pages found and read, and
the non-digits that come out as a number (as `digitlab predict --number` reads them). The rule
taken maximises the score: numbers read exactly (each kind) and found on pages, minus twice
the numbers read wrong (a wrong number costs a user more than a declined one), in points; without
letting more non-digits through than the cuts alone.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from common import DATA_DIR, describe_machine

DOUBTS = (0.9, 0.99, 0.999, 1.01)  # 1.01: every number is read again
SURES = (0.5, 0.8, 0.9, 0.95)
ANSWERS = (0.8, 0.95, 0.99, 1.01)  # 1.01: never where the cuts declined
NOT_DIGITS_SEED = 777


def readings(model, sources: list[bytes], page: bool, line: Path) -> list[list[tuple[dict, tuple]]]:
    """For each image, each number's (reading by cuts, line reader's reading)."""
    from digitlab.read.line import read_lines
    from digitlab.read.number import find, read_by_cuts

    out = []
    for source in sources:
        layout = find(source, page)
        if layout.reason:
            out.append([])
            continue
        cuts, numbers = read_by_cuts(model, layout)
        out.append(list(zip(cuts, read_lines(numbers, line), strict=True)))
    return out


def answer(pairs: list[tuple[dict, tuple]], doubt: float, sure: float, declined: float) -> list[str | None]:
    from digitlab.read.line import doubtful, wins

    return [
        line[0] if doubtful(cut, doubt) and wins(cut, line[0], line[1], sure, declined) else cut["number"]
        for cut, line in pairs
    ]


def points(*figures: float) -> float:
    """(exact, wrong) for each kind of number, then pages, then non-digits: the score in points."""
    *numbers, pages, _ = figures
    return 100 * (sum(numbers[::2]) + pages - 2 * sum(numbers[1::2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="numbers of each kind")
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--line", type=Path, default=None, help="a line reader (.onnx); the shipped one by default")
    args = parser.parse_args()

    from digitlab.data import lines, negatives, synth
    from digitlab.data.mnist import load_mnist
    from digitlab.io.load import load
    from digitlab.read.line import LINE
    from digitlab.robustness.suite import suite_seed
    from digitlab.robustness.wild import matched

    line = args.line or LINE
    data = load_mnist(DATA_DIR)
    images, labels = data.x_val.reshape(-1, 28, 28), data.y_val
    model = load(None)
    print(f"machine: {describe_machine()}\nline reader: {line}; validation family\n")
    sets = {}
    for touching in (False, True):
        files, texts = lines.numbers(images, labels, args.n, "validation", touching)
        sets["touching" if touching else "gaps"] = (readings(model, files, False, line), texts)
    files, texts = synth.numbers(data.x_val, labels, args.n, suite_seed("validation") + 200)  # as the suite's
    sets["suite"] = (readings(model, files, False, line), texts)
    files, truths = lines.pages(images, labels, args.pages, "validation")
    pages = (readings(model, files, True, line), truths)
    others = [f for kind in negatives.EVAL_KINDS for f in negatives.evaluation(kind, 40, NOT_DIGITS_SEED)]
    not_digits = readings(model, others, False, line)

    def score(doubt: float, sure: float, declined: float) -> tuple[float, ...]:
        row = []
        for found, texts in sets.values():
            got = [answer(pairs[:1], doubt, sure, declined)[0] if pairs else None for pairs in found]
            row += [np.mean([g == t for g, t in zip(got, texts, strict=True)])]
            row += [np.mean([g is not None and g != t for g, t in zip(got, texts, strict=True)])]
        found = [m for pairs, t in zip(*pages, strict=True) for m in matched(answer(pairs, doubt, sure, declined), t)]
        passed = np.mean([bool(p) and answer(p[:1], doubt, sure, declined)[0] is not None for p in not_digits])
        return (*row, np.mean(found), passed)

    head = "doubt | sure | answer | gaps | wrong | touching | wrong | suite's | wrong | pages | not digits | score"
    print(f"| {head} |\n" + "|---" * 12 + "|")
    alone = score(-1.0, 2.0, 2.0)  # nothing read again: the cuts alone
    rows = [("cuts alone", "", "", alone)]
    rows += [(d, s, a, score(d, s, a)) for d, s, a in itertools.product(DOUBTS, SURES, ANSWERS)]
    best = max((r for r in rows[1:] if r[3][-1] <= alone[-1]), key=lambda r: points(*r[3]))
    for d, s, a, figures in rows:
        mark = " **taken**" if (d, s, a) == best[:3] else ""
        print(f"| {d} | {s} | {a} | {' | '.join(f'{v:.1%}' for v in figures)} | {points(*figures):.1f}{mark} |")


if __name__ == "__main__":
    main()
