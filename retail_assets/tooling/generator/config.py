"""Generator configuration and size presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# Named sizes. Sales line counts are totals over both channels (files + Kafka), approximate.
PRESETS: dict[str, dict[str, Any]] = {
    # ~350 sales lines over 3 days: unit tests.
    "tiny": dict(days=3, stores=4, products=40, customers=80, transactions_per_store_day=15),
    # ~100k sales lines over 7 days.
    "small": dict(days=7, stores=50, products=5000, customers=20000, transactions_per_store_day=146),
    # ~1M sales lines over 7 days.
    "medium": dict(days=7, stores=100, products=20000, customers=100000, transactions_per_store_day=730),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Same config → byte-identical output."""

    seed: int = 7
    start_date: date = date(2026, 11, 1)
    days: int = 7
    stores: int = 6
    products: int = 120
    customers: int = 400  # customers in the initial snapshot (new ones sign up during the run)
    transactions_per_store_day: int = 30  # mean; each store-day varies ±15 %
    max_lines_per_transaction: int = 4
    kafka_share: float = 0.5  # share of transactions sent as Kafka events instead of file lines
    return_rate: float = 0.05  # share of transactions that are returns (own transaction, negative qty)
    anonymous_rate: float = 0.2  # share of transactions without a customer
    defects: bool = False
    defect_rate: float = 0.03
    lateness_days: int = 2  # SPEC §4 lateness window L
    dimension_change_rate: float = 0.02  # daily share of customers / products / stores that change
    new_customer_rate: float = 0.01  # daily sign-ups, as a share of the initial customers (at least 1 a day)
    late_arrival_rate: float = 0.03  # share of transactions that legitimately arrive the next day
    inventory_products_per_store: int | None = None  # store assortment size; None = derived from products
    # A web shop store (format `online`, no tills, no stock) beside the `stores` physical ones, for
    # the operational database's online orders (`generator/orders.py`). Off: output unchanged.
    web_store: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.start_date, str):  # convenience for CLI/JSON callers
            object.__setattr__(self, "start_date", date.fromisoformat(self.start_date))
        problems = []
        for name in ("days", "stores", "customers", "transactions_per_store_day", "max_lines_per_transaction"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.products < 2:
            problems.append("products must be >= 2")
        if self.lateness_days < 0:
            problems.append("lateness_days must be >= 0")
        for name in (
            "kafka_share",
            "return_rate",
            "anonymous_rate",
            "defect_rate",
            "dimension_change_rate",
            "new_customer_rate",
            "late_arrival_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be within 0..1, got {value}")
        if self.stores > 9000 or self.products > 9_000_000 or self.customers > 9_000_000:
            problems.append("stores/products/customers too large for the id formats")
        if self.inventory_products_per_store is not None and self.inventory_products_per_store < 1:
            problems.append("inventory_products_per_store must be >= 1")
        if problems:
            raise ValueError("invalid GeneratorConfig: " + "; ".join(problems))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GeneratorConfig:
        """A named size (`tiny`, `small`, `medium`), optionally with fields overridden."""
        try:
            values = dict(PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown GeneratorConfig fields: {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    # Alias: GeneratorConfig.size("small")
    size = preset

    def replace(self, **changes: Any) -> GeneratorConfig:
        return dataclasses.replace(self, **changes)

    @property
    def end_date(self) -> date:
        """Last business day (inclusive)."""
        return self.start_date + timedelta(days=self.days - 1)

    @property
    def business_dates(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.days)]
