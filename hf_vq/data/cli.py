"""``python -m hf_vq.data list`` prints the offline builders; ``python -m hf_vq.data build NAME --output DIR``
builds one (``[--stride 16] [--image-size 32] [--max-train N] [--max-test N] [--overwrite]``)."""

from __future__ import annotations

import argparse
import inspect
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import datasets

from .builders import BUILDERS, PATCH_SIZE, build_dataset


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hf_vq.data list`` | ``build NAME --output DIR [...]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hf_vq.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the offline builders")
    build = commands.add_parser("build", help="build an offline dataset with save_to_disk")
    build.add_argument("name", choices=list(BUILDERS))
    build.add_argument("--output", required=True, type=Path, help="dataset directory to create")
    build.add_argument("--stride", type=int, help=f"patches only: pixels between patches (default {PATCH_SIZE})")
    build.add_argument("--image-size", type=int, help="resize images to this square size (default: keep)")
    build.add_argument("--max-train", type=int, help="keep a fixed-seed subset of this many train examples")
    build.add_argument("--max-test", type=int, help="keep a fixed-seed subset of this many test examples")
    build.add_argument("--overwrite", action="store_true", help="replace a different existing build")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, builder in BUILDERS.items():
            print(f"{name:14s} {inspect.getdoc(builder).splitlines()[0]}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = {
        key: value
        for key, value in (
            ("stride", args.stride), ("image_size", args.image_size),
            ("max_train", args.max_train), ("max_test", args.max_test),
        )
        if value is not None
    }
    start = time.perf_counter()
    try:
        out = build_dataset(args.name, args.output, overwrite=args.overwrite, **options)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")
    ds = datasets.load_from_disk(str(out))
    sizes = ", ".join(f"{split} {len(ds[split])}" for split in ds)
    print(f"{args.name}: {sizes} in {out} ({time.perf_counter() - start:.1f} s)")
    return 0

