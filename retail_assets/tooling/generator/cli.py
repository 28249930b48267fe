"""`python -m retail_assets.tooling.generator --out DIR [--preset tiny] [--seed N] [--days 7] [--defects]`."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from .config import PRESETS, GeneratorConfig
from .run import generate


def build_parser(prog: str = "python -m retail_assets.tooling.generator") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Generate the synthetic landing zone, Kafka messages and defect manifest."
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (landing/, kafka/, manifest.json)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named size; other options override it")
    p.add_argument("--seed", type=int)
    p.add_argument("--days", type=int)
    p.add_argument("--start-date", type=date.fromisoformat, help="first business day, YYYY-MM-DD")
    p.add_argument("--stores", type=int)
    p.add_argument("--products", type=int)
    p.add_argument("--customers", type=int)
    p.add_argument("--transactions-per-store-day", type=int)
    p.add_argument("--kafka-share", type=float)
    p.add_argument("--lateness-days", type=int)
    p.add_argument("--defects", action="store_true", help="inject the SPEC §7 defects and list them in manifest.json")
    p.add_argument("--defect-rate", type=float)
    p.add_argument("--force", action="store_true", help="replace an existing landing/, kafka/ and manifest.json")
    return p


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    overrides = {
        "seed": args.seed,
        "days": args.days,
        "start_date": args.start_date,
        "stores": args.stores,
        "products": args.products,
        "customers": args.customers,
        "transactions_per_store_day": args.transactions_per_store_day,
        "kafka_share": args.kafka_share,
        "lateness_days": args.lateness_days,
        "defect_rate": args.defect_rate,
        "defects": True if args.defects else None,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.preset:
        return GeneratorConfig.preset(args.preset, **overrides)
    return GeneratorConfig(**overrides)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the generator from command-line arguments; returns the exit code."""
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    try:
        result = generate(config, args.out, overwrite=args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(
        f"generated seed={config.seed} start={config.start_date} days={config.days} "
        f"defects={'on' if config.defects else 'off'} in {elapsed:.1f}s"
    )
    print(result.summary())
    return 0
