"""The generator's entry point: a clean world, then (optionally) its defects on top."""

from __future__ import annotations

import random
from pathlib import Path

from .buffer import LandingBuffer
from .config import GeneratorConfig
from .core import Build, _finish, _generate_sales, _prepare_out_dir, _write_dimensions, _write_inventory
from .defects import inject_defects
from .model import GenerationResult
from .world import World


def generate(config: GeneratorConfig, out_dir: str | Path, *, overwrite: bool = False) -> GenerationResult:
    """Write `out_dir/landing/...`, `out_dir/kafka/pos_transactions.jsonl` and `out_dir/manifest.json`."""
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)

    rng = random.Random(config.seed)
    world = World(config, rng)
    b = Build(config=config, world=world, landing=LandingBuffer())
    sold_by_day = _generate_sales(b, rng)
    _write_dimensions(b)
    _write_inventory(b, rng, sold_by_day)

    if config.defects:
        # its own random stream: the clean records are the same with or without defects
        inject_defects(b, random.Random(f"{config.seed}:defects"))

    return _finish(b, out_dir)
