"""When the line reader's reading wins over the reading by cuts (read/line.py), chosen on validation:

    python benchmarks/choose_line_rule.py [--n 300] [--pages 60] [--line PATH]

Each validation number (data/lines.py's validation family: ordinary gaps, touching; and the
robustness suite's own numbers, MNIST's 20-px box side by side, data/synth.py), each number on 60
validation pages and 360 held-out non-digits (negatives.evaluation, seed 777, 40 of each
kind) is read once by cuts (read.number.read_by_cuts) and once by the line reader at PATH (the
shipped assets/line.onnx by default); then every rule of the grid is scored from those readings.
A rule is (doubt: a reading by cuts with a digit under it is read again; then the probability
the line reader gives its reading, to replace one: sure, where each digit was a mark of its own;
cut, where the cuts split a mark; answer, where they declined a part).
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
SURES = (0.5, 0.8, 0.9, 0.95, 1.01)  # 1.01: never where each digit is a mark of its own
CUT_SURES = (0.0, 0.3, 0.5, 0.8, 0.9, 1.01)  # 1.01: never where a mark was split
ANSWERS = (0.5, 0.65, 0.8, 0.9, 0.95, 1.01)  # 1.01: never where the cuts declined
NOT_DIGITS_SEED = 777


def readings(model, sources: list[bytes], page: bool, line: Path) -> list[list[tuple]]:
    """For each image, each number's (reading by cuts, its marks, line reader's Reading)."""
    from digitlab.read.line import read_lines
    from digitlab.read.number import find, read_by_cuts

    out = []
    for source in sources:
        layout = find(source, page)
        if layout.reason:
            out.append([])
            continue
        cuts, numbers = read_by_cuts(model, layout)
        out.append(list(zip(cuts, [len(n) for n in numbers], read_lines(numbers, line), strict=True)))
    return out


def answer(pairs: list[tuple], *rule: float) -> list[str | None]:
    from digitlab.read.line import doubtful, wins

    doubt, sure, cut_sure, declined = rule
    taken = [
        doubtful(cut, marks, doubt) and wins(cut, marks, line.text, line.probability, sure, cut_sure, declined)
        for cut, marks, line in pairs
    ]
    return [line.text if take else cut["number"] for (cut, _, line), take in zip(pairs, taken, strict=True)]


def points(*figures: float) -> float:
    """(exact, wrong) for each kind of number, then pages, then non-digits: the score in points."""
    *numbers, pages, _ = figures
    return 100 * (sum(numbers[::2]) + pages - 2 * sum(numbers[1::2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="numbers of each kind")
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--top", type=int, default=12, help="the best rules printed")
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

    def score(*rule: float) -> tuple[float, ...]:
        row = []
        for found, texts in sets.values():
            got = [answer(pairs[:1], *rule)[0] if pairs else None for pairs in found]
            row += [np.mean([g == t for g, t in zip(got, texts, strict=True)])]
            row += [np.mean([g is not None and g != t for g, t in zip(got, texts, strict=True)])]
        found = [m for pairs, t in zip(*pages, strict=True) for m in matched(answer(pairs, *rule), t)]
        passed = np.mean([bool(p) and answer(p[:1], *rule)[0] is not None for p in not_digits])
        return (*row, np.mean(found), passed)

    head = "doubt | sure | cut | answer | gaps | wrong | touching | wrong | suite's | wrong | pages | not digits"
    print(f"| {head} | score |\n" + "|---" * 13 + "|")
    alone = score(-1.0, 2.0, 2.0, 2.0)  # no reading of the line reader's taken: the cuts alone
    grid = [(rule, score(*rule)) for rule in itertools.product(DOUBTS, SURES, CUT_SURES, ANSWERS)]
    allowed = sorted((r for r in grid if r[1][-1] <= alone[-1]), key=lambda r: -points(*r[1]))
    print(f"| cuts alone | | | | {' | '.join(f'{v:.1%}' for v in alone)} | {points(*alone):.1f} |")
    for k, (rule, figures) in enumerate(allowed[: args.top]):
        mark = " **taken**" if k == 0 else ""
        shown = " | ".join([*map(str, rule), *(f"{v:.1%}" for v in figures)])
        print(f"| {shown} | {points(*figures):.1f}{mark} |")
    print(f"({len(grid)} rules; {len(grid) - len(allowed)} let more non-digits through than the cuts alone)")


if __name__ == "__main__":
    main()
