"""MNIST: find it (or download it), parse and verify it, split it 50k/10k/10k.

No TensorFlow import here, so data errors surface in a fraction of a second. Finding, verifying
and splitting the files needs numpy alone: `digitlab data` works in the base install.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from digitlab.data.download import download
from digitlab.data.idx import idx_header, parse_idx, read_bytes
from digitlab.errors import DigitlabError

# The four canonical files, each with the SHA-256 of its *decompressed* content: mirrors
# recompress the gzip bytes, but the content of the real MNIST never changes.
FILES = {
    "train_images": ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

# Tried in order; the first two are the ones torchvision and TensorFlow Datasets use.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

NPZ_NAME = "mnist.npz"  # Keras' format: x_train, y_train, x_test, y_test
IMAGE_SIZE = 28


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digitlab" / "mnist"


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / NPZ_NAME


# --- IDX files ---------------------------------------------------------------------------


def idx_candidates(folder: Path, name: str) -> list[Path]:
    """`train-images-idx3-ubyte` also appears as `train-images.idx3-ubyte`, each raw or .gz."""
    dotted = name.replace("-idx", ".idx")
    return [folder / n for base in (name, dotted) for n in (base, base + ".gz")]


def find_idx(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, (name, _) in FILES.items():
        hits = [p for p in idx_candidates(folder, name) if p.is_file()]
        if not hits:
            return None
        found[key] = hits[0]
    return found


# --- where the data is --------------------------------------------------------------------


def search_path(data_dir: str | Path | None = None) -> list[Path]:
    """Folders and files to look in, in order: --data-dir, $DIGITLAB_DATA_DIR, cache, Keras' cache."""
    places = [Path(p).expanduser() for p in (data_dir, os.environ.get("DIGITLAB_DATA_DIR")) if p]
    return [*places, cache_dir(), keras_cache()]


def locate(data_dir: str | Path | None = None) -> dict[str, Path] | Path | None:
    """The four IDX files of the first place that holds them, or an mnist.npz, or None."""
    for place in search_path(data_dir):
        if place.is_file() and place.suffix == ".npz":
            return place
        if place.is_dir():
            if (files := find_idx(place)) is not None:
                return files
            if (place / NPZ_NAME).is_file():
                return place / NPZ_NAME
    return None


@dataclass(frozen=True)
class RawMNIST:
    """The 60k/10k arrays as published: uint8 images (N, 28, 28), uint8 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def read_mnist(source: dict[str, Path] | Path) -> RawMNIST:
    """Parse and validate a located MNIST; every error names the offending file."""
    if isinstance(source, Path):
        arrays = _read_npz(source)
        names = {key: f"{source}[{key}]" for key in FILES}
        where = str(source)
    else:
        arrays = {key: parse_idx(read_bytes(path), str(path)) for key, path in source.items()}
        names = {key: str(path) for key, path in source.items()}
        where = str(source["train_images"].parent)
    # Structure first, so the error is the most specific one; the checksum last.
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        image_name, label_name = names[f"{part}_images"], names[f"{part}_labels"]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DigitlabError(f"{image_name} holds arrays of shape {images.shape[1:]}, not 28x28 images")
        if labels.ndim != 1:
            raise DigitlabError(f"{label_name} is not a label file (shape {labels.shape})")
        if len(images) != len(labels):
            raise DigitlabError(
                f"{image_name} has {len(images)} images but {label_name} has {len(labels)} labels; "
                "replace them with a matching pair"
            )
        if labels.size and labels.max() > 9:
            raise DigitlabError(f"{label_name} has label {labels.max()}, outside 0-9; replace it with a fresh copy")
    for key, (_, sha) in FILES.items():
        a = arrays[key]
        if hashlib.sha256(idx_header(a) + a.tobytes()).hexdigest() != sha:
            raise DigitlabError(
                f"{names[key]} is not the real MNIST (SHA-256 mismatch): the file is corrupt or "
                "another data set; delete it so digitlab downloads a fresh copy"
            )
    return RawMNIST(**arrays, source=where)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    keys = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test"}
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: np.ascontiguousarray(npz[k], dtype=np.uint8) for key, k in keys.items()}
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise DigitlabError(f"corrupt {path}: {e}; delete it, or use the IDX files instead") from None


# --- the split ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MNIST:
    """Train/val/test arrays ready for Keras: float32 images in [0, 1] of shape (N, 28, 28, 1)
    and integer labels. `val` is carved out of the 60k training set; `test` is the official 10k."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def summary(self) -> dict:
        return {"source": self.source, "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def subset(self, n: int | None) -> MNIST:
        """The first `n` training images (quick looks, tests). The validation share shrinks with
        it, so a quick run stays quick; test stays whole."""
        if n is None or n >= len(self.y_train):
            return self
        n_val = max(n // 5, 10)
        return replace(
            self, x_train=self.x_train[:n], y_train=self.y_train[:n], x_val=self.x_val[:n_val], y_val=self.y_val[:n_val]
        )

    def digest(self) -> str:
        """A fingerprint of every image and label of the three splits: two runs with the same
        digest saw the same data in the same roles."""
        h = hashlib.blake2b(digest_size=12)
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(str(array.shape).encode())
            h.update(np.ascontiguousarray(array).data)
        return h.hexdigest()


def split_indices(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-stratified train/val indices: each digit keeps its share in both parts. The
    very split scikit-learn's train_test_split(stratify=labels, random_state=seed) draws, step for
    step, in numpy alone: the base install has none, and recorded runs keep their validation set."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    low, high = len(classes), len(labels) - len(classes)  # a digit of each on both sides
    if not low <= val_size <= high:
        raise DigitlabError(f"--val-size must be between {low} and {high}, got {val_size}")
    rng = np.random.RandomState(seed)
    n_train = _approximate_mode(counts, len(labels) - val_size, rng)
    n_val = _approximate_mode(counts - n_train, val_size, rng)
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    train, val = [], []
    for members, t, v in zip(by_class, n_train, n_val, strict=True):
        shuffled = members[rng.permutation(len(members))]
        train.append(shuffled[:t])
        val.append(shuffled[t : t + v])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Each class's share of `draws`, rounded down, the rest to the largest remainders, ties
    broken at random (scikit-learn's utils.extmath._approximate_mode)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1] if need > 0 else []:
        (tied,) = np.where(remainder == value)
        take = min(len(tied), need)
        floored[rng.choice(tied, size=take, replace=False)] += 1
        need -= take
        if need == 0:
            break
    return floored.astype(int)


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return np.divide(images, np.float32(255), dtype=np.float32)[..., None]  # one pass, no uint8 -> float copy


def offline() -> bool:
    """DIGITLAB_OFFLINE=1 forbids downloads (tests and CI set it: they read a local copy)."""
    return os.environ.get("DIGITLAB_OFFLINE", "") not in ("", "0")


def load_raw(data_dir: str | Path | None = None, download_missing: bool = True) -> RawMNIST:
    source = locate(data_dir)
    if source is None:
        places = search_path(data_dir)
        if not download_missing or offline():
            raise DigitlabError(
                "MNIST not found in " + ", ".join(map(str, places)) + "; put the four IDX files "
                "(train-images-idx3-ubyte.gz, ...) or mnist.npz in one of them, or pass --data-dir"
            )
        source = download(places[0], "MNIST", FILES, MIRRORS)  # --data-dir, else $DIGITLAB_DATA_DIR, else the cache
    return read_mnist(source)


def load_mnist(
    data_dir: str | Path | None = None,
    val_size: int = 10_000,
    split_seed: int = 0,
    download_missing: bool = True,
) -> MNIST:
    """The MNIST split every digitlab run uses: 50k train, 10k val (stratified, seeded), 10k test.

    `split_seed` is separate from the training seed so that every model and seed is
    compared on the very same validation set.
    """
    raw = load_raw(data_dir, download_missing)
    train, val = split_indices(raw.train_labels, val_size, split_seed)
    labels = raw.train_labels.astype(np.int64)
    return MNIST(
        x_train=scale(raw.train_images[train]),
        y_train=labels[train],
        x_val=scale(raw.train_images[val]),
        y_val=labels[val],
        x_test=scale(raw.test_images),
        y_test=raw.test_labels.astype(np.int64),
        source=raw.source,
    )
