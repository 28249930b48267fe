"""Master data (stores, products, customers) and its change history over the generated days.

Pure functions of the config and one `random.Random`; the sales and defect generators read it.

Longer than the project's usual module: the master data and its change history are one model,
read by the sales and defect generators alike.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from retail_assets.lib.registry.tables import LOYALTY_TIERS, STORE_FORMATS

from . import vocab
from .config import GeneratorConfig

EPOCH = date(1970, 1, 1)
DAY = 86400


def epoch_of(d: date) -> int:
    """UTC midnight of `d` as epoch seconds."""
    return (d - EPOCH).days * DAY


def fmt_utc(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def fmt_offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    m = abs(minutes)
    return f"{sign}{m // 60:02d}:{m % 60:02d}"


def fmt_local(d_iso: str, seconds: int, offset: str) -> str:
    """ISO-8601 local time: `2026-11-03T14:05:09+01:00` (seconds since local midnight)."""
    return f"{d_iso}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{offset}"


def cents_str(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    c = abs(cents)
    return f"{sign}{c // 100}.{c % 100:02d}"


def prob_round(rng: random.Random, x: float) -> int:
    """Round x up with probability equal to its fraction (keeps the expected value)."""
    base = int(x)
    return base + (1 if rng.random() < x - base else 0)


_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ł": "l", "Ł": "L", "đ": "d"})


def _ascii(s: str) -> str:
    folded = unicodedata.normalize("NFKD", s.translate(_TRANSLIT)).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


@dataclass(slots=True)
class Store:
    idx: int
    num: int
    store_id: str
    name: str
    city: str
    country: str
    region: str
    format: str
    opened_on: str
    status: str
    offset_min: int
    offset: str
    open_s: int  # local opening time, seconds since midnight
    close_s: int  # local closing time; chosen so that open hours stay on the same UTC date
    snapshot_updated_at: int
    assortment: list[int] = field(default_factory=list)  # product indexes sold and stocked here
    cum_weights: list[float] = field(default_factory=list)

    def values(self) -> dict[str, str | None]:
        return {
            "store_id": self.store_id,
            "name": self.name,
            "city": self.city,
            "region": self.region,
            "format": self.format,
            "opened_on": self.opened_on,
            "status": self.status,
        }


@dataclass(slots=True)
class Product:
    idx: int
    product_id: str
    name: str
    category: str
    brand: str
    unit_cost: int  # cents
    list_price: int  # cents
    status: str
    snapshot_updated_at: int
    popularity: float
    # price history: effective epoch seconds (ascending) and the price string valid from then
    price_from: list[int] = field(default_factory=list)
    price_str: list[str] = field(default_factory=list)
    price_cents: list[int] = field(default_factory=list)

    def values(self) -> dict[str, str | None]:
        return {
            "product_id": self.product_id,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "unit_cost": cents_str(self.unit_cost),
            "list_price": cents_str(self.list_price),
            "status": self.status,
        }

    def price_at(self, epoch_s: int) -> tuple[str, int]:
        if len(self.price_from) == 1:
            return self.price_str[0], self.price_cents[0]
        i = bisect_right(self.price_from, epoch_s) - 1
        if i < 0:
            i = 0
        return self.price_str[i], self.price_cents[i]


@dataclass(slots=True)
class Customer:
    idx: int
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    city: str
    country: str
    birth_date: str
    loyalty_tier: str
    created_at: int  # epoch seconds of the first master record's updated_at
    created_day: int  # -1 = initial snapshot, else index of the day the customer signed up

    def values(self) -> dict[str, str | None]:
        return {
            "customer_id": self.customer_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "phone": self.phone,
            "city": self.city,
            "country": self.country,
            "birth_date": self.birth_date,
            "loyalty_tier": self.loyalty_tier,
        }


@dataclass(slots=True)
class Change:
    """A dimension change record: business key, changed attributes (others None), updated_at."""

    source: str  # customers | products | stores
    values: dict[str, str | None]
    updated_at: int
    full: bool = False  # a complete record (snapshot row or a new customer)


_AREA = {"New York": "212", "Boston": "617", "Toronto": "416", "Halifax": "902"}
_CC = {"GR": "30", "ES": "34", "FI": "358", "NL": "31", "PT": "351"}


class World:
    """Entities, id formats and the day-by-day change log."""

    def __init__(self, config: GeneratorConfig, rng: random.Random):
        self.config = config
        self.rng = rng
        self.start = config.start_date
        self.days = config.days
        self.start_epoch = epoch_of(self.start)

        self.max_new_per_day = int(config.customers * config.new_customer_rate) + 1
        max_customers = config.customers + self.max_new_per_day * config.days
        self.w_store = max(3, len(str(config.stores + 60)))
        self.w_product = max(5, len(str(config.products + 60)))
        self.w_customer = max(5, len(str(max_customers + 60)))
        self.w_seq = max(5, len(str(int(config.transactions_per_store_day * 1.2) + 60)))

        self._emails: dict[str, int] = {}
        self.stores: list[Store] = []
        self.products: list[Product] = []
        self.customers: list[Customer] = []
        # changes[day] = change records arriving that day (day 0 also holds the full snapshot)
        self.changes: list[list[Change]] = [[] for _ in range(config.days)]
        # new_customers[day] = customers who sign up that day (their full record arrives that day)
        self.new_customers: list[list[Customer]] = [[] for _ in range(config.days)]

        self._build_products()
        self._build_stores()
        # the web shop: in the store master data only (it has no tills, no stock, no changes)
        self.web_store = self._web_store() if config.web_store else None
        for _ in range(config.customers):
            self._new_customer(-1, self.start_epoch - rng.randint(30 * DAY, 730 * DAY))
        self._snapshot()
        for day in range(1, config.days):
            self._daily_changes(day)

    # -- ids ------------------------------------------------------------------------------------
    def store_id(self, num: int) -> str:
        return f"S{num:0{self.w_store}d}"

    def product_id(self, num: int) -> str:
        return f"P{num:0{self.w_product}d}"

    def customer_id(self, num: int) -> str:
        return f"C{num:0{self.w_customer}d}"

    def txid(self, store_num: int, ymd: str, seq: int) -> str:
        return f"T{store_num:0{self.w_store}d}{ymd}{seq:0{self.w_seq}d}"

    def unknown_store_num(self, k: int) -> int:
        return 10**self.w_store - 1 - (k % 50)

    def unknown_product_id(self, k: int) -> str:
        return self.product_id(10**self.w_product - 1 - (k % 50))

    def unknown_customer_id(self, k: int) -> str:
        return self.customer_id(10**self.w_customer - 1 - (k % 50))

    def defect_seq(self, j: int) -> int:
        """Transaction sequence numbers for injected transactions count down from the top."""
        return 10**self.w_seq - 1 - j

    # -- builders -------------------------------------------------------------------------------
    def _product_name(self, category: int, brand: str) -> tuple[str, str]:
        rng = self.rng
        cat, nouns, _, _ = vocab.CATEGORIES[category]
        noun = rng.choice(nouns)
        variant = rng.choice(vocab.PRODUCT_VARIANTS)
        size = rng.choice(vocab.PRODUCT_SIZES)
        if rng.random() < 0.1:  # some names carry a comma, so CSV must quote them
            return f"{brand} {noun}, {variant} {size}", cat
        return f"{brand} {variant} {noun} {size}", cat

    def _build_products(self) -> None:
        rng, cfg = self.rng, self.config
        for i in range(cfg.products):
            ci = rng.randrange(len(vocab.CATEGORIES))
            brand = rng.choice(vocab.BRANDS)
            name, cat = self._product_name(ci, brand)
            lo, hi = vocab.CATEGORIES[ci][2], vocab.CATEGORIES[ci][3]
            price = rng.randint(lo, hi)
            cost = max(1, round(price * rng.uniform(0.45, 0.8)))
            status = "discontinued" if rng.random() < 0.05 else "active"
            p = Product(
                idx=i,
                product_id=self.product_id(i + 1),
                name=name,
                category=cat,
                brand=brand,
                unit_cost=cost,
                list_price=price,
                status=status,
                snapshot_updated_at=self.start_epoch - rng.randint(30 * DAY, 730 * DAY),
                popularity=rng.lognormvariate(0.0, 1.0),
            )
            p.price_from.append(p.snapshot_updated_at)
            p.price_str.append(cents_str(price))
            p.price_cents.append(price)
            self.products.append(p)
        if all(p.status != "active" for p in self.products):
            self.products[0].status = "active"

    def _build_stores(self) -> None:
        rng, cfg = self.rng, self.config
        active = [p.idx for p in self.products if p.status == "active"]
        size = cfg.inventory_products_per_store or max(20, cfg.products // 8)
        size = min(len(active), size, 600 if cfg.inventory_products_per_store is None else size)
        for i in range(cfg.stores):
            city, country, offset_min, region = vocab.CITIES[i % len(vocab.CITIES)]
            district = vocab.STORE_DISTRICTS[(i // len(vocab.CITIES) + i) % len(vocab.STORE_DISTRICTS)]
            fmt = rng.choices(STORE_FORMATS, weights=(2, 5, 3, 1))[0]
            opened = date(2005, 1, 1) + timedelta(days=rng.randint(0, 20 * 365))
            # keep open hours (plus a few minutes of Kafka delay) on the same UTC date as the local date
            close_s = min(21 * 3600, 24 * 3600 - 10 * 60 + offset_min * 60)
            s = Store(
                idx=i,
                num=i + 1,
                store_id=self.store_id(i + 1),
                name=f"{vocab.STORE_BRAND} {city} {district}",
                city=city,
                country=country,
                region=region,
                format=fmt,
                opened_on=opened.isoformat(),
                status="open",
                offset_min=offset_min,
                offset=fmt_offset(offset_min),
                open_s=8 * 3600,
                close_s=close_s,
                snapshot_updated_at=self.start_epoch - rng.randint(30 * DAY, 730 * DAY),
            )
            s.assortment = sorted(rng.sample(active, size))
            total = 0.0
            for pi in s.assortment:
                total += self.products[pi].popularity
                s.cum_weights.append(total)
            self.stores.append(s)

    def _web_store(self) -> Store:
        """The web shop's store record, drawn from no random source: the world is otherwise the
        one `web_store=False` builds."""
        city, country, offset_min, region = vocab.CITIES[0]
        num = self.config.stores + 1
        return Store(
            idx=self.config.stores,
            num=num,
            store_id=self.store_id(num),
            name=f"{vocab.STORE_BRAND} Online",
            city=city,
            country=country,
            region=region,
            format="online",
            opened_on="2015-01-01",
            status="open",
            offset_min=offset_min,
            offset=fmt_offset(offset_min),
            open_s=0,
            close_s=DAY - 1,
            snapshot_updated_at=self.start_epoch - 365 * DAY,
        )

    def _email(self, first: str, last: str) -> str:
        domain = vocab.EMAIL_DOMAINS[len(self._emails) % 7 % len(vocab.EMAIL_DOMAINS)]
        base = f"{_ascii(first)}.{_ascii(last)}"
        n = self._emails.get(base, 0) + 1
        self._emails[base] = n
        return f"{base}@{domain}" if n == 1 else f"{base}{n}@{domain}"

    def _phone(self, city: str, country: str) -> str:
        r = self.rng.randint
        if country == "GB":
            return f"+44 20 7946 0{r(0, 999):03d}" if city != "Manchester" else f"+44 161 496 0{r(0, 999):03d}"
        if country == "IE":
            return f"+353 1 555 {r(0, 9999):04d}"
        if country == "FR":
            return f"+33 1 99 {r(0, 99):02d} {r(0, 99):02d} {r(0, 99):02d}"
        if country == "DE":
            return f"+49 30 {r(100, 999)} {r(1000, 9999)}"
        if country in ("US", "CA"):
            return f"+1 {_AREA.get(city, '555')} 555 01{r(0, 99):02d}"
        return f"+{_CC.get(country, '99')} {r(10, 99)} {r(100, 999)} {r(1000, 9999)}"

    def _new_customer(self, day: int, created_at: int) -> Customer:
        rng = self.rng
        first = rng.choice(vocab.FIRST_NAMES)
        last = rng.choice(vocab.LAST_NAMES)
        city, country, _, _ = rng.choice(vocab.CITIES)
        birth = date(1945, 1, 1) + timedelta(days=rng.randint(0, 62 * 365))
        c = Customer(
            idx=len(self.customers),
            customer_id=self.customer_id(len(self.customers) + 1),
            first_name=first,
            last_name=last,
            email=self._email(first, last),
            phone=self._phone(city, country),
            city=city,
            country=country,
            birth_date=birth.isoformat(),
            loyalty_tier=rng.choices(LOYALTY_TIERS, weights=(50, 30, 15, 5))[0],
            created_at=created_at,
            created_day=day,
        )
        self.customers.append(c)
        return c

    def _snapshot(self) -> None:
        log = self.changes[0]
        for s in self.stores + ([self.web_store] if self.web_store else []):
            log.append(Change("stores", s.values(), s.snapshot_updated_at, full=True))
        for p in self.products:
            log.append(Change("products", p.values(), p.snapshot_updated_at, full=True))
        for c in self.customers:
            log.append(Change("customers", c.values(), c.created_at, full=True))

    def _daily_changes(self, day: int) -> None:
        rng, cfg = self.rng, self.config
        day_epoch = self.start_epoch + day * DAY
        log = self.changes[day]

        # sign-ups: full records, updated_at before any store opens that day (00:00-05:59 UTC)
        n_new = max(1, prob_round(rng, cfg.customers * cfg.new_customer_rate))
        for _ in range(n_new):
            c = self._new_customer(day, day_epoch + rng.randint(0, 6 * 3600 - 1))
            self.new_customers[day].append(c)
            log.append(Change("customers", c.values(), c.created_at, full=True))

        # customer changes (existing before today)
        existing = [c for c in self.customers if c.created_day < day]
        n = min(len(existing), prob_round(rng, len(existing) * cfg.dimension_change_rate))
        for c in sorted(rng.sample(existing, n), key=lambda c: c.idx):
            values: dict[str, str | None] = {k: None for k in c.values()}
            values["customer_id"] = c.customer_id
            attrs = {
                rng.choices(("email", "phone", "city", "loyalty_tier", "last_name"), weights=(25, 20, 20, 30, 5))[0]
                for _ in range(rng.randint(1, 2))
            }
            for a in sorted(attrs):
                if a == "email":
                    c.email = self._email(c.first_name, c.last_name)
                    values["email"] = c.email
                elif a == "phone":
                    c.phone = self._phone(c.city, c.country)
                    values["phone"] = c.phone
                elif a == "city":
                    city, country, _, _ = rng.choice([x for x in vocab.CITIES if x[0] != c.city])
                    c.city, c.country = city, country
                    values["city"], values["country"] = city, country
                elif a == "loyalty_tier":
                    c.loyalty_tier = rng.choice([t for t in LOYALTY_TIERS if t != c.loyalty_tier])
                    values["loyalty_tier"] = c.loyalty_tier
                else:
                    c.last_name = rng.choice([x for x in vocab.LAST_NAMES if x != c.last_name])
                    values["last_name"] = c.last_name
            log.append(Change("customers", values, day_epoch + rng.randint(0, DAY - 1)))

        # product changes; a new list price applies to sales from its updated_at on
        n = min(len(self.products), prob_round(rng, len(self.products) * cfg.dimension_change_rate))
        for p in sorted(rng.sample(self.products, n), key=lambda p: p.idx):
            values = {k: None for k in p.values()}
            values["product_id"] = p.product_id
            updated = day_epoch + rng.randint(0, DAY - 1)
            if p.status == "discontinued":
                p.status = "active"
                values["status"] = p.status
            else:
                a = rng.choices(("list_price", "unit_cost", "name"), weights=(55, 25, 20))[0]
                if a == "list_price":
                    p.list_price = max(9, round(p.list_price * rng.uniform(0.85, 1.15)))
                    values["list_price"] = cents_str(p.list_price)
                    p.price_from.append(updated)
                    p.price_str.append(cents_str(p.list_price))
                    p.price_cents.append(p.list_price)
                elif a == "unit_cost":
                    p.unit_cost = max(1, round(p.unit_cost * rng.uniform(0.9, 1.1)))
                    values["unit_cost"] = cents_str(p.unit_cost)
                else:
                    ci = next(i for i, x in enumerate(vocab.CATEGORIES) if x[0] == p.category)
                    p.name = self._product_name(ci, p.brand)[0]
                    values["name"] = p.name
            log.append(Change("products", values, updated))

        # store changes: at least one over the whole run (on day 1), so SCD1 has something to do
        n = min(len(self.stores), prob_round(rng, len(self.stores) * cfg.dimension_change_rate))
        if day == 1 and n == 0:
            n = 1
        for s in sorted(rng.sample(self.stores, n), key=lambda s: s.idx):
            values = {k: None for k in s.values()}
            values["store_id"] = s.store_id
            a = rng.choice(("name", "format", "status"))
            if a == "name":
                district = rng.choice([d for d in vocab.STORE_DISTRICTS if not s.name.endswith(d)])
                s.name = f"{vocab.STORE_BRAND} {s.city} {district}"
                values["name"] = s.name
            elif a == "format":
                s.format = rng.choice([f for f in STORE_FORMATS if f != s.format])
                values["format"] = s.format
            else:
                s.status = "renovating" if s.status == "open" else "open"
                values["status"] = s.status
            log.append(Change("stores", values, day_epoch + rng.randint(0, DAY - 1)))


def web_store_of(world: World) -> str:
    """The world's web store (`GeneratorConfig.web_store`), else its first `online` one, else its last."""
    return next(
        (s.store_id for s in (world.web_store, *world.stores) if s and s.format == "online"), world.stores[-1].store_id
    )
