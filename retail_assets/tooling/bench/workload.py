"""Benchmark workloads: deterministic generator configurations at named sizes, and the
10,000-file landing zone the landing-sensor tick is measured (and tested) against.

Every size has 50 stores, 5k products and 20k customers with dimension change feeds and every
defect of SPEC §7; sizes differ only in transactions per store and day, so the time from one
size to the next shows how the work scales with the sales volume.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from retail_assets.tooling.generator import (
    GenerationResult,
    GeneratorConfig,
    KafkaMessage,
    generate,
    read_kafka_messages,
)

SIZES: dict[str, dict[str, object]] = {
    # seconds, for the bench's own test
    "tiny": dict(preset="tiny", days=1),
    # ≈ 100k sales lines over 7 days
    "small": dict(preset="small"),
    # ≈ 1M sales lines over 7 days: ten times small's transactions, same master data
    "medium": dict(preset="small", transactions_per_store_day=1460),
}
WORKLOAD_FILE = "workload.json"


@dataclass(frozen=True)
class Workload:
    size: str
    root: Path  # landing/, kafka/, manifest.json as the generator wrote them
    config: GeneratorConfig
    lateness_days: int
    counts: dict[str, int]
    files: int
    generate_s: float

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def event_days(self) -> list[str]:
        return [d.isoformat() for d in self.config.business_dates]

    @property
    def arrival_days(self) -> list[str]:
        """Event days plus the lateness window after the last one: what the main job runs."""
        last = self.config.end_date + dt.timedelta(days=self.lateness_days)
        return [
            (self.config.start_date + dt.timedelta(days=i)).isoformat()
            for i in range((last - self.config.start_date).days + 1)
        ]

    @property
    def sales_lines(self) -> int:
        return self.counts.get("sales_lines_in_files", 0) + self.counts.get("kafka_lines", 0)

    def messages_by_arrival_day(self) -> dict[str, list[KafkaMessage]]:
        by_day: dict[str, list[KafkaMessage]] = defaultdict(list)
        for message in read_kafka_messages(self.root / "kafka" / "pos_transactions.jsonl"):
            by_day[message.arrival_date.isoformat()].append(message)
        return dict(by_day)

    def make_available(self, landing: Path, days: list[str]) -> int:
        """Link the landing files of these arrival days into the landing zone `landing`, as they
        land on their day (a copy where a link cannot be made); returns how many."""
        import os  # noqa: PLC0415
        import shutil  # noqa: PLC0415

        from retail_assets.lib.sources.landing import arrival_date_of  # noqa: PLC0415

        linked = 0
        for path in sorted(p for p in self.landing.rglob("*") if p.is_file()):
            relative = path.relative_to(self.landing).as_posix()
            if arrival_date_of(relative, path.stat().st_mtime).isoformat() not in days:
                continue
            target = landing / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
            linked += 1
        return linked

    def describe(self) -> dict[str, object]:
        return {
            "size": self.size,
            "sales_lines": self.sales_lines,
            "kafka_events": self.counts.get("kafka_events", 0),
            "landing_files": self.files,
            "stores": self.config.stores,
            "products": self.config.products,
            "customers": self.config.customers,
            "days": self.config.days,
            "defects": self.config.defects,
            "seed": self.config.seed,
            "generate_s": round(self.generate_s, 1),
        }

    def save(self) -> None:
        data = {
            "size": self.size,
            "lateness_days": self.lateness_days,
            "counts": self.counts,
            "files": self.files,
            "generate_s": self.generate_s,
            "config": {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in vars(self.config).items()},
        }
        (self.root / WORKLOAD_FILE).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: Path) -> Workload:
        data = json.loads((root / WORKLOAD_FILE).read_text())
        return cls(
            data["size"],
            root,
            GeneratorConfig(**data["config"]),
            data["lateness_days"],
            data["counts"],
            data["files"],
            data["generate_s"],
        )


def config_for(
    size: str, *, seed: int = 7, lateness_days: int = 2, days: int | None = None, start_date: dt.date | None = None
) -> GeneratorConfig:
    try:
        spec = dict(SIZES[size])
    except KeyError:
        raise ValueError(f"unknown bench size {size!r}; known: {sorted(SIZES)}") from None
    preset = str(spec.pop("preset"))
    if days is not None:
        spec["days"] = days
    if start_date is not None:
        spec["start_date"] = start_date
    return GeneratorConfig.preset(preset, seed=seed, defects=True, lateness_days=lateness_days, **spec)


def build_workload(
    size: str,
    root: Path,
    *,
    seed: int = 7,
    lateness_days: int = 2,
    days: int | None = None,
    start_date: dt.date | None = None,
) -> Workload:
    import time  # noqa: PLC0415

    config = config_for(size, seed=seed, lateness_days=lateness_days, days=days, start_date=start_date)
    started = time.monotonic()
    result: GenerationResult = generate(config, root, overwrite=True)
    workload = Workload(
        size, Path(root), config, lateness_days, dict(result.counts), len(result.files), time.monotonic() - started
    )
    workload.save()
    return workload


def landing_with_held_files(root: Path, files: int, new: int, spark=None) -> Path:
    """`files` sales files in one arrival day under `root/landing`, all but the last `new` already
    held by `bronze.sales_files` under `root/lakehouse`: the landing sensor's worst steady case."""
    import pyarrow as pa  # noqa: PLC0415

    from retail_assets.lib.engine import DeltaRsEngine, PartitionRange  # noqa: PLC0415
    from retail_assets.lib.registry.tables import BRONZE_SALES_FILES  # noqa: PLC0415

    landing = root / "landing"
    day = dt.date(2026, 11, 3)
    folder = landing / "sales" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"sales/{day.isoformat()}/pos_S{i // 100:03d}_{i:05d}.csv" for i in range(files)]
    for name in names:
        (landing / name).write_bytes(b"transaction_id\n")
    held = names[:-new]
    now = dt.datetime.now(dt.UTC)
    schema = BRONZE_SALES_FILES.arrow_schema()
    columns = {
        "_source": [f"{n}:1" for n in held],
        "_raw_record": ["transaction_id"] * len(held),
        "_source_file": held,
        "_source_line": [1] * len(held),
        "_ingested_at": [now] * len(held),
        "_batch_id": ["seed"] * len(held),
        "_arrival_date": [day] * len(held),
    }
    rows = pa.table({f.name: pa.array(columns.get(f.name, [None] * len(held)), f.type) for f in schema}, schema=schema)
    DeltaRsEngine(root / "lakehouse", spark=spark).overwrite_partitions(
        BRONZE_SALES_FILES, rows, PartitionRange.single(day)
    )
    return landing
