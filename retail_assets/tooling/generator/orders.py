"""The operational database's week (SPEC §2, docs/architecture.md): the CRM and the web
shop inserting, updating and deleting `orders.customers`, `orders.online_orders`, `orders.order_lines`.

The week is planned first, as a pure function of the config (`plan_week`): every statement of
every day with its row. `apply_day` runs one day's plan in three transactions (the CRM's changes,
the day's new orders, the updates and cancellations of earlier orders), so the same config gives
the same rows, and the same change records in the same order, in any database.

CRM customer ids are `C` and nine digits from 900000001 on (`CRM_ID_DIGITS`), and the landing
zone's (`World.customer_id`) have five to eight: the two sources never share a key.
`OrdersConfig.from_generator` refuses a world too large for that.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from retail_assets.lib.registry.tables import LOYALTY_TIERS
from retail_assets.lib.sources.database import CHANGE_TIME_SETTING, install_capture

from . import vocab
from .config import GeneratorConfig
from .world import DAY, World, _ascii, epoch_of, prob_round, web_store_of

SCHEMA = "orders"
CRM_ID_DIGITS = 9
CRM_ID_FIRST = 900_000_001
ORDER_STATUSES = ("placed", "shipped", "delivered")
WEB_PAYMENT_METHODS = ("card", "mobile", "gift_card")
KEYS = {"customers": ("customer_id",), "online_orders": ("order_id",), "order_lines": ("order_id", "line_number")}
_CALLING = dict(GB="44", IE="353", FR="33", DE="49", US="1", CA="1", GR="30", ES="34", FI="358", NL="31", PT="351")

BUSINESS_DDL = """
CREATE SCHEMA IF NOT EXISTS orders;
CREATE TABLE IF NOT EXISTS orders.customers (
    customer_id  text PRIMARY KEY,
    first_name text, last_name text, email text, phone text, city text, country text,
    birth_date date, loyalty_tier text,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS orders.online_orders (
    order_id       text PRIMARY KEY,
    store_id       text NOT NULL,
    customer_id    text,
    ordered_at     timestamptz NOT NULL,
    payment_method text NOT NULL,
    status         text NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS orders.order_lines (
    order_id    text NOT NULL REFERENCES orders.online_orders ON DELETE CASCADE,
    line_number int  NOT NULL,
    product_id  text NOT NULL,
    quantity    int  NOT NULL,
    unit_price  numeric(12,2) NOT NULL,
    discount    numeric(4,3) NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, line_number)
);
"""


@dataclass(frozen=True)
class OrdersConfig:
    """What the CRM and the web shop do over the week. Same config → same rows, same change records."""

    seed: int = 7
    start_date: date = date(2026, 11, 1)
    days: int = 7
    customers: int = 40  # CRM customers in the day-0 snapshot
    orders_per_day: int = 12  # mean of the web shop's orders per day (each day varies ±25 %)
    web_store_id: str | None = None  # None: `web_store_of` the world (its web store when it has one)
    signups_per_day: int = 2  # new CRM customers from day 1 on
    customer_update_rate: float = 0.1  # daily share of customers whose record changes (at least one)
    customer_delete_rate: float = 0.03  # share of customers erased, every other day (at least one)
    line_update_rate: float = 0.08  # daily share of placed orders with one line's quantity changed (at least one)
    cancel_rate: float = 0.08  # daily share of placed orders deleted before shipping (at least one)
    world: GeneratorConfig = field(default_factory=GeneratorConfig)  # products, prices and stores come from it

    def __post_init__(self) -> None:
        problems = [f"{n} must be >= 1" for n in ("days", "customers") if getattr(self, n) < 1]
        if self.orders_per_day < 2:
            problems.append("orders_per_day must be >= 2 (a day both cancels one order and changes another)")
        for name in ("customer_update_rate", "customer_delete_rate", "line_update_rate", "cancel_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within 0..1")
        if problems:
            raise ValueError("invalid OrdersConfig: " + "; ".join(problems))

    @classmethod
    def from_generator(cls, config: GeneratorConfig, **overrides: Any) -> OrdersConfig:
        """The database's week beside a generated landing zone: same seed, days, products and stores."""
        world = _world(config)
        if world.w_customer >= CRM_ID_DIGITS:
            raise ValueError(
                f"the generator's customer ids have {world.w_customer} digits, so they could meet the CRM's "
                f"({CRM_ID_DIGITS} digits): generate fewer customers"
            )
        values = dict(
            seed=config.seed,
            start_date=config.start_date,
            days=config.days,
            customers=max(20, config.customers // 10),
            orders_per_day=max(4, config.stores * config.transactions_per_store_day // 10),
            web_store_id=web_store_of(world),
            world=config,
        )
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class Statement:
    """One row written: `row` holds the whole row (I), the key and the changed columns (U), or the key (D)."""

    table: str
    op: str
    row: dict[str, Any]


@dataclass
class DayPlan:
    day: date
    transactions: list[list[Statement]]
    # the change records the day produces: (table, op, key), a deleted order's cascade included
    changes: list[tuple[str, str, str]]


@dataclass
class WeekPlan:
    days: list[DayPlan]
    final_counts: dict[str, int]  # rows per business table once the week is applied


def change_key(table: str, row: dict[str, Any]) -> str:
    """The business key of a row as one string: `C900000001`, `W2026110100001`, `W2026110100001/2`."""
    return "/".join(str(row[k]) for k in KEYS[table])


def crm_customer_id(number: int) -> str:
    """The CRM's id of its `number`th customer (from 1): `C900000001`."""
    return f"C{CRM_ID_FIRST - 1 + number:0{CRM_ID_DIGITS}d}"


@functools.lru_cache(maxsize=4)
def _world(config: GeneratorConfig) -> World:
    return World(config, random.Random(config.seed))  # as `generate` builds it: the same products and prices


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


class _Planner:
    """The week's state as the shop and the CRM see it, and the statements that change it."""

    def __init__(self, config: OrdersConfig):
        self.config = config
        self.rng = random.Random(f"{config.seed}:orders")
        self.world = _world(config.world)
        self.web_store_id = config.web_store_id or web_store_of(self.world)
        self.start_epoch = epoch_of(config.start_date)
        self.products = [p for p in self.world.products if p.status == "active"]
        self.weights = list(itertools.accumulate(p.popularity for p in self.products))
        self.customers: dict[str, dict[str, Any]] = {}  # live CRM customers, by id
        self.orders: dict[str, dict[str, Any]] = {}  # live orders: status, lines, ship and delivery days
        self.emails: dict[str, int] = {}
        self.signed_up = 0

    def week(self) -> WeekPlan:
        days = [self.day(d) for d in range(self.config.days)]
        counts = {
            "customers": len(self.customers),
            "online_orders": len(self.orders),
            "order_lines": sum(len(o["lines"]) for o in self.orders.values()),
        }
        return WeekPlan(days, counts)

    def day(self, d: int) -> DayPlan:
        day_epoch = self.start_epoch + d * DAY
        crm, cascades = self.crm(d, day_epoch), {}
        new_orders = self.new_orders(d, day_epoch)
        updates = self.order_updates(d, day_epoch, cascades)
        changes = []
        for s in itertools.chain(crm, new_orders, updates):
            changes.append((s.table, s.op, change_key(s.table, s.row)))
            if s.table == "online_orders" and s.op == "D":  # its lines go by the foreign key's cascade
                changes.extend(("order_lines", "D", key) for key in cascades[s.row["order_id"]])
        return DayPlan(self.config.start_date + timedelta(days=d), [crm, new_orders, updates], changes)

    # -- the CRM --------------------------------------------------------------------------------
    def new_customer(self, updated_at: int) -> Statement:
        rng = self.rng
        first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
        city, country, _, _ = rng.choice(vocab.CITIES)
        self.signed_up += 1
        row = {
            "customer_id": crm_customer_id(self.signed_up),
            "first_name": first,
            "last_name": last,
            "email": self.email(first, last),
            "phone": self.phone(country),
            "city": city,
            "country": country,
            "birth_date": date(1945, 1, 1) + timedelta(days=rng.randint(0, 62 * 365)),
            "loyalty_tier": rng.choices(LOYALTY_TIERS, weights=(50, 30, 15, 5))[0],
            "updated_at": _utc(updated_at),
        }
        self.customers[row["customer_id"]] = row
        return Statement("customers", "I", row)

    def email(self, first: str, last: str) -> str:
        base = f"{_ascii(first)}.{_ascii(last)}"
        n = self.emails[base] = self.emails.get(base, 0) + 1
        domain = vocab.EMAIL_DOMAINS[sum(self.emails.values()) % len(vocab.EMAIL_DOMAINS)]
        return f"{base}@shop.{domain}" if n == 1 else f"{base}{n}@shop.{domain}"

    def phone(self, country: str) -> str:
        r = self.rng.randint
        return f"+{_CALLING.get(country, '99')} {r(10, 99)} {r(100, 999)} {r(1000, 9999)}"

    def crm(self, d: int, day_epoch: int) -> list[Statement]:
        rng, cfg = self.rng, self.config
        if d == 0:
            return [self.new_customer(day_epoch - rng.randint(30 * DAY, 730 * DAY)) for _ in range(cfg.customers)]
        existing = list(self.customers)  # before today's sign-ups
        out = [self.new_customer(day_epoch + rng.randint(0, 6 * 3600 - 1)) for _ in range(cfg.signups_per_day)]
        n = min(len(existing), max(1, prob_round(rng, len(existing) * cfg.customer_update_rate)))
        updated = sorted(rng.sample(existing, n))
        for cid in updated:
            customer, row = self.customers[cid], {"customer_id": cid}
            for attr in sorted(
                {rng.choice(("email", "phone", "city", "loyalty_tier")) for _ in range(rng.randint(1, 2))}
            ):
                if attr == "email":
                    row["email"] = self.email(customer["first_name"], customer["last_name"])
                elif attr == "phone":
                    row["phone"] = self.phone(customer["country"])
                elif attr == "city":
                    city, country, _, _ = rng.choice([c for c in vocab.CITIES if c[0] != customer["city"]])
                    row["city"], row["country"] = city, country
                else:
                    row["loyalty_tier"] = rng.choice([t for t in LOYALTY_TIERS if t != customer["loyalty_tier"]])
            row["updated_at"] = _utc(day_epoch + rng.randint(6 * 3600, DAY - 1))
            customer.update(row)
            out.append(Statement("customers", "U", row))
        if d % 2 == 1:  # erasure requests are handled every other day
            kept = [c for c in existing if c not in updated]
            n = min(len(kept), max(1, prob_round(rng, len(existing) * cfg.customer_delete_rate)))
            for cid in sorted(rng.sample(kept, n)):
                del self.customers[cid]  # their orders keep the customer_id
                out.append(Statement("customers", "D", {"customer_id": cid}))
        return out

    # -- the web shop ---------------------------------------------------------------------------
    def new_orders(self, d: int, day_epoch: int) -> list[Statement]:
        rng, cfg = self.rng, self.config
        n = max(2, round(cfg.orders_per_day * rng.uniform(0.75, 1.25)))
        ymd = (cfg.start_date + timedelta(days=d)).strftime("%Y%m%d")
        customers = list(self.customers)
        out: list[Statement] = []
        for seq, at in enumerate(sorted(rng.randint(0, DAY - 1) for _ in range(n)), start=1):
            ordered_at = day_epoch + at
            order = {
                "order_id": f"W{ymd}{seq:05d}",
                "store_id": self.web_store_id,
                "customer_id": rng.choice(customers),
                "ordered_at": _utc(ordered_at),
                "payment_method": rng.choices(WEB_PAYMENT_METHODS, weights=(6, 3, 1))[0],
                "status": "placed",
                "updated_at": _utc(ordered_at),
            }
            out.append(Statement("online_orders", "I", order))
            picked = rng.choices(self.products, cum_weights=self.weights, k=rng.randint(1, 4))
            lines = {}
            for number, index in enumerate(dict.fromkeys(p.idx for p in picked), start=1):  # one line per product
                product = self.world.products[index]
                lines[number] = {
                    "order_id": order["order_id"],
                    "line_number": number,
                    "product_id": product.product_id,
                    "quantity": rng.choices((1, 2, 3), weights=(70, 22, 8))[0],
                    "unit_price": Decimal(product.price_at(ordered_at)[0]),
                    "discount": Decimal(rng.choices(("0", "0.05", "0.1", "0.2"), weights=(80, 8, 8, 4))[0]),
                }
                out.append(Statement("order_lines", "I", lines[number]))
            ship = d + rng.randint(1, 2)
            self.orders[order["order_id"]] = {"status": "placed", "lines": lines, "ship": ship}
            self.orders[order["order_id"]]["deliver"] = ship + rng.randint(1, 3)
        return out

    def order_updates(self, d: int, day_epoch: int, cascades: dict[str, list[str]]) -> list[Statement]:
        rng, cfg = self.rng, self.config
        out: list[Statement] = []
        for oid, order in self.orders.items():
            for status, when in (("shipped", "ship"), ("delivered", "deliver")):
                if order[when] == d:
                    order["status"] = status
                    row = {"order_id": oid, "status": status, "updated_at": _utc(day_epoch + rng.randint(0, DAY - 1))}
                    out.append(Statement("online_orders", "U", row))
        placed = [oid for oid, o in self.orders.items() if o["status"] == "placed"]
        n = min(len(placed), max(1, prob_round(rng, len(placed) * cfg.line_update_rate)))
        changed = sorted(rng.sample(placed, n))
        for oid in changed:
            line = self.orders[oid]["lines"][rng.choice(sorted(self.orders[oid]["lines"]))]
            line["quantity"] = rng.choice([q for q in (1, 2, 3, 4) if q != line["quantity"]])
            out.append(
                Statement(
                    "order_lines", "U", {**{k: line[k] for k in KEYS["order_lines"]}, "quantity": line["quantity"]}
                )
            )
        kept = [oid for oid in placed if oid not in changed]
        n = min(len(kept), max(1, prob_round(rng, len(placed) * cfg.cancel_rate)))
        for oid in sorted(rng.sample(kept, n)):
            cascades[oid] = [change_key("order_lines", line) for line in self.orders.pop(oid)["lines"].values()]
            out.append(Statement("online_orders", "D", {"order_id": oid}))
        return out


@functools.lru_cache(maxsize=8)
def plan_week(config: OrdersConfig) -> WeekPlan:
    """Every day's statements and change records (shared: do not modify)."""
    return _Planner(config).week()


def expected_changes(config: OrdersConfig) -> list[list[tuple[str, str, str]]]:
    """Per day, the change records applying it produces, as (table, op, key), in the order
    PostgreSQL 15 records them (a deleted order, then its lines deleted by the cascade)."""
    return [list(day.changes) for day in plan_week(config).days]


def install_schema(conn: psycopg.Connection) -> None:
    """The business tables and the project's change capture on them (idempotent; commits)."""
    with conn.transaction():
        conn.execute(BUSINESS_DDL)
    install_capture(conn)


def _run(conn: psycopg.Connection, statements: list[Statement]) -> None:
    """Consecutive statements of one shape go to the server as one pipelined batch."""
    for (table, op, columns), group in itertools.groupby(statements, key=lambda s: (s.table, s.op, tuple(s.row))):
        target = sql.Identifier(SCHEMA, table)
        keys = KEYS[table]
        where = sql.SQL(" AND ").join(sql.SQL("{} = %({})s").format(sql.Identifier(k), sql.SQL(k)) for k in keys)
        if op == "I":
            query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                target,
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(map(sql.Placeholder, columns)),
            )
        elif op == "U":
            sets = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns if c not in keys
            )
            query = sql.SQL("UPDATE {} SET {} WHERE {}").format(target, sets, where)
        else:
            query = sql.SQL("DELETE FROM {} WHERE {}").format(target, where)
        with conn.cursor() as cur:
            cur.executemany(query, [s.row for s in group])


def apply_day(conn: psycopg.Connection, config: OrdersConfig, day_index: int) -> None:
    """Write day `day_index` of the week on an autocommit connection: three transactions, each committed."""
    if not conn.autocommit:
        raise ValueError("apply_day commits its own transactions: pass a connection with autocommit=True")
    plan = plan_week(config).days[day_index]
    for statements in plan.transactions:
        with conn.transaction():
            # the simulated moment of the transaction: its change records carry it (`CHANGE_TIME_SETTING`)
            conn.execute(
                "SELECT set_config(%s, %s, true)", (CHANGE_TIME_SETTING, _moment(plan, statements).isoformat())
            )
            _run(conn, statements)


def _moment(plan: DayPlan, statements: list[Statement]) -> datetime:
    """When a transaction of the simulated week happens: its newest `updated_at`, or the day's end."""
    end = datetime(plan.day.year, plan.day.month, plan.day.day, 23, 59, tzinfo=UTC)
    return max((s.row["updated_at"] for s in statements if "updated_at" in s.row), default=end)


def seed_week(dsn: str, config: OrdersConfig) -> list[int]:
    """Install the schema in an empty database and apply every day; returns the highest
    `change_id` after each day (the high-water mark an extraction after that day would take)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        install_schema(conn)
        if conn.execute("SELECT EXISTS (SELECT 1 FROM orders.customers)").fetchone()[0]:
            raise ValueError(f"orders.customers of {conn.info.dbname} already holds rows: seed an empty database")
        marks = []
        for d in range(config.days):
            apply_day(conn, config, d)
            marks.append(conn.execute("SELECT coalesce(max(change_id), 0) FROM orders.changes").fetchone()[0])
        return marks
