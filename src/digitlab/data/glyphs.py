"""Typed characters that are not digits: the fonts (matplotlib's, so nothing depends on the
system's), the characters each really has, and images as the files users upload. negatives.py
and synth.py draw with these; training and evaluation use disjoint fonts (TRAIN_FONTS, EVAL_FONTS)."""

from __future__ import annotations

import io
from functools import cache, lru_cache
from pathlib import Path
from unicodedata import normalize

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Glyphs a person would read as a digit at 28x28, kept out of both sides.
CONFUSABLE = frozenset(
    "OoQDCc"  # 0: closed or nearly closed ovals
    "IlijJ|!()[]{}/\\↑↓✓"  # 1: a bar, with at most a hook, a serif, an arrow head or a check's short arm
    "Zz"  # 2
    "Ss§"  # 5
    "bG"  # 6
    "B"  # 8
    "gq"  # 9
    "Σ"  # 2 or 3 at this size
    "-_.,:;'\"`"  # a lone dash or speck: a 1 at best
)
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzλπΩΔΠψμ" if c not in CONFUSABLE)
SYMBOLS = "".join(c for c in "#+=*%$&@?<>~^×÷±≠→←♥♦♣♠★✓∞€¥" if c not in CONFUSABLE)
SOLID = "♥♦♣♠★"  # filled: typed only, as their skeleton is a bare line (a ♦'s is a 1) or a stick figure
TRAIN_FONTS = ("DejaVuSans*.ttf", "DejaVuSerif*.ttf")  # DejaVuSans* includes Sans Mono
EVAL_FONTS = ("STIXGeneral*.ttf", "STIXNonUni*.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf")
_MISDRAWN = {"cmti10.ttf": "$"}  # Knuth's text italic draws £ in the $ slot, and names the glyph "dollar"


def font_dir() -> Path:
    import matplotlib  # its fonts ship with the package: nothing depends on what the system has installed

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=256)
def truetype(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def glyph(path: Path, char: str, size: int) -> np.ndarray:
    """The glyph's ink, uint8 0-255, cropped to its box."""
    font = truetype(path, size)
    left, top, right, bottom = font.getbbox(char)
    image = Image.new("L", (max(1, right - left) + 2, max(1, bottom - top) + 2))
    ImageDraw.Draw(image).text((1 - left, 1 - top), char, fill=255, font=font)
    return np.asarray(image)


@cache
def glyphs(path: Path) -> str:
    """The characters of LETTERS + SYMBOLS the font really has: mapped, named for that character, not blank."""
    from fontTools.agl import toUnicode
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        cmap = font.getBestCmap() or {}
    missing = glyph(path, "\U0010fffd", 48)  # what the font draws for a character it lacks (.notdef)
    kept = []
    for char in LETTERS + SYMBOLS:
        name = cmap.get(ord(char))
        # Computer Modern puts other glyphs at ASCII code points ('<' is ¡, '\\' is “): trust the glyph's name.
        if name is None or normalize("NFKC", toUnicode(name) or char) != char or char in _MISDRAWN.get(path.name, ""):
            continue
        ink = glyph(path, char, 48)
        if ink.max() > 0 and not (ink.shape == missing.shape and np.array_equal(ink, missing)):
            kept.append(char)
    return "".join(kept)


@cache
def fonts(role: str) -> tuple[Path, ...]:
    """The fonts of "training" or "evaluation" that have at least one glyph of ours. STIXNonUni*
    drop out here: their characters all sit in the Private Use Area."""
    patterns = {"training": TRAIN_FONTS, "evaluation": EVAL_FONTS}[role]
    found = sorted({p for pattern in patterns for p in font_dir().glob(pattern) if "Display" not in p.name})
    return tuple(p for p in found if glyphs(p))


def pick_glyph(role: str, charset: str, rng: np.random.Generator) -> tuple[Path, str]:
    usable = [(f, chars) for f in fonts(role) if (chars := [c for c in glyphs(f) if c in charset])]
    font, chars = usable[int(rng.integers(len(usable)))]
    return font, chars[int(rng.integers(len(chars)))]


def encode(image: Image.Image, fmt: str, quality: int = 90) -> bytes:
    """The image as a file's bytes: what a user uploads (synth.py's renders too)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255
