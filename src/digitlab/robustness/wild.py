"""The suite's conditions "in the wild": what users photograph, not digits cut out for them.

  desk photos       a sheet on a desk, one digit on it (data/scenes.py; measured in suite.py
                    like the other real inputs)
  one height        numbers of 2-5 digits at one height, ordinary gaps (data/lines.py)
  touching          the same, neighbours touching or overlapping a little
  pages             3-8 numbers on 1-4 lines, read with `digitlab read`: the share of numbers
                    found and read exactly, in reading order

The test split is drawn in the generators' test family, the validation split in their validation
family: no desk texture, paper, pen, size or spacing range is shared between the two.
"""

from __future__ import annotations

import numpy as np

from digitlab.io.native import Model


def family(split: str) -> str:
    return "test" if split == "test" else "validation"


def numbers(model: Model, images: np.ndarray, labels: np.ndarray, split: str, n: int) -> list[dict]:
    """The numbers' and pages' figures, one dict of Result's fields a condition."""
    from digitlab.data import lines
    from digitlab.read.predict import predict_image

    rows = []
    for touching in (False, True):
        files, texts = lines.numbers(images, labels, n, family(split), touching)
        answers = [predict_image(model, f, number=True) for f in files]
        got = [a["number"] for a in answers]
        rows.append(
            {
                "condition": "touching" if touching else "one height",
                "n": n,
                "read": float(np.mean([g == t for g, t in zip(got, texts, strict=True)])),
                "declined": float(np.mean([g is None for g in got])),
                "example": answers[0]["image28"][:, :28],
            }
        )
    files, truths = lines.pages(images, labels, max(1, n // 5), family(split))
    found = [m for f, t in zip(files, truths, strict=True) for m in matched(_read(model, f), t)]
    rows.append({"condition": "pages", "n": len(found), "read": float(np.mean(found)), "declined": None})
    return rows


def _read(model: Model, image: bytes) -> list[str | None]:
    from digitlab.read.number import read_numbers

    return [n["number"] for n in read_numbers(model, image)["numbers"]]


def matched(got: list, truth: list[str]) -> list[bool]:
    """For each true number, whether it was found and read exactly, in reading order: whether
    it is in the longest common subsequence of `got` and `truth`."""
    table = np.zeros((len(truth) + 1, len(got) + 1), int)
    for i, t in enumerate(truth):
        for j, g in enumerate(got):
            table[i + 1, j + 1] = table[i, j] + 1 if t == g else max(table[i, j + 1], table[i + 1, j])
    found, i, j = [False] * len(truth), len(truth), len(got)
    while i and j:
        if truth[i - 1] == got[j - 1]:
            found[i - 1], i, j = True, i - 1, j - 1
        elif table[i - 1, j] >= table[i, j - 1]:
            i -= 1
        else:
            j -= 1
    return found
