#!/usr/bin/env python3
"""Regenerate sqakd_edge/data/embedded/fashion_mnist_subset.npz from Debian's Fashion-MNIST IDX files.

The subset is the first PER_CLASS_TRAIN training images and the first PER_CLASS_TEST test images of each
class, in file order, so it is the same on every machine. The npz is written byte-for-byte
reproducibly (fixed zip timestamps), so ``--check`` can tell whether the shipped file is what this
script makes.

    PYTHONPATH=$PWD python scripts/make_embedded_subset.py            # rewrite the file
    PYTHONPATH=$PWD python scripts/make_embedded_subset.py --check    # exit 1 if it differs

Fashion-MNIST is (c) 2017 Zalando SE, MIT licence (apt-get install dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from sqakd_edge.data.embedded import SUBSET_FILE
from sqakd_edge.data.fashion_mnist import DEFAULT_ROOT, find_root, load_split

PER_CLASS_TRAIN = 600
PER_CLASS_TEST = 100


def first_per_class(images: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` images of every class, kept in their original file order."""
    keep = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        keep[np.flatnonzero(labels == label)[:per_class]] = True
    if np.bincount(labels[keep]).min() < per_class:
        raise SystemExit(f"a class has fewer than {per_class} images")
    return images[keep], labels[keep]


def build_arrays(root: Path) -> dict[str, np.ndarray]:
    """The subset's four arrays from the IDX files in ``root``."""
    arrays = {}
    for split, per_class in (("train", PER_CLASS_TRAIN), ("test", PER_CLASS_TEST)):
        images, labels = load_split(find_root(root), split)
        images, labels = first_per_class(images[:, 0], labels, per_class)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed npz (what ``np.savez_compressed`` writes) with fixed timestamps, for reproducible bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the subset; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder of the IDX .gz files")
    parser.add_argument("--out", type=Path, default=SUBSET_FILE, help="npz to write")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)

    data = npz_bytes(build_arrays(args.root))
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'matches' if same else 'DIFFERS from'} the regenerated subset (sha256 {digest})")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".tmp-", suffix=".npz")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the installed package must be able to read it
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(data)} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
