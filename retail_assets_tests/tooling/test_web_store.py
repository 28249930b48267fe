"""The generator's web shop store: a store record of format `online` that the operational
database's orders name, added only when asked for, leaving the rest of the world as it was."""

from __future__ import annotations

import random

from retail_assets.tooling.generator.config import GeneratorConfig
from retail_assets.tooling.generator.orders import OrdersConfig
from retail_assets.tooling.generator.world import World


def world(config: GeneratorConfig) -> World:
    return World(config, random.Random(config.seed))


def test_the_web_store_is_an_online_store_record_and_changes_nothing_else():
    config = GeneratorConfig.preset("tiny")
    plain, shop = world(config), world(config.replace(web_store=True))
    assert plain.web_store is None
    assert (shop.web_store.store_id, shop.web_store.format, shop.web_store.status) == ("S005", "online", "open")
    # its record arrives with the day-0 store snapshot; every other change record is the same
    snapshot = [c.values for c in shop.changes[0] if c.source == "stores"]
    assert snapshot[-1]["store_id"] == "S005" and snapshot[-1]["format"] == "online"
    others = [c.values for d in shop.changes for c in d if c.values.get("store_id") != "S005"]
    assert others == [c.values for d in plain.changes for c in d]
    # no till sells there: the physical stores are the same ones
    assert [s.store_id for s in shop.stores] == [s.store_id for s in plain.stores]


def test_the_database_week_names_the_web_store():
    config = GeneratorConfig.preset("tiny", web_store=True)
    assert OrdersConfig.from_generator(config).web_store_id == "S005"
