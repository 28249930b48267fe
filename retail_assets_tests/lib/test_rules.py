"""Quarantine rules are data: Silver judges what `lib/registry/rules.py` declares.

A rule's conditions and messages are read from its declaration when Silver plans a judgement,
so a new rule that names the columns it judges (`Rule.on`) is applied with no other code, in
the precedence its position gives it; and every declared form is one Silver renders.
"""

from __future__ import annotations

import pytest

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_INVENTORY,
    SILVER_CUSTOMERS,
    master_data,
)
from retail_assets.lib.transforms import silver
from retail_assets.lib.transforms.silver import judging
from retail_assets_tests.lib.test_silver import (
    BATCH,
    D,
    bronze,
    collect_all,
    customer,
    default_known,
    run_sales,
    sale,
)

SALES = rules.RULE[rules.ZERO_QUANTITY].applies_to

IMPLAUSIBLE_QUANTITY = rules.Rule(
    "implausible_quantity",
    rules.RULE_VIOLATIONS,
    "more units on one line than a till sells",
    SALES,
    (rules.When("", "abs({value}) > 1000", "{column} {value} is more than a till sells on one line"),),
    on=("silver.sales_lines.quantity",),
)

NO_AT_SIGN = rules.Rule(
    "no_at_sign",
    rules.RULE_VIOLATIONS,
    "an e-mail address without an @: refused",
    (BRONZE_CUSTOMERS.key,),
    (rules.When("", "NOT {raw} LIKE '%@%'", "{column} {raw} has no @"),),
    on=("silver.customers.email",),
)


def declare(monkeypatch, rule: rules.Rule, *, before: str) -> None:
    """Insert `rule` into the declarations just before `before`, as an edit of `RULES` would."""
    names = [r.name for r in rules.RULES]
    at = names.index(before)
    monkeypatch.setattr(rules, "RULES", (*rules.RULES[:at], rule, *rules.RULES[at:]))


def test_a_declared_rule_judges_its_column_with_no_other_code(spark, monkeypatch):
    declare(monkeypatch, IMPLAUSIBLE_QUANTITY, before=rules.ZERO_QUANTITY)
    out = collect_all(
        run_sales(
            spark,
            [
                sale("T1", qty="2"),
                sale("T2", qty="5000"),
                sale("T3", qty="-1200"),  # a return of that size is as implausible
                sale("T4", qty="5000", price="-1.00"),  # negative_price is declared earlier: it comes first
            ],
        )
    )
    assert [r["transaction_id"] for r in out.sales_lines] == ["T1"]
    violations = {r["record_key"]: r for r in out.violations}
    assert {k: v["rule"] for k, v in violations.items()} == {
        "T2:1": "implausible_quantity",
        "T3:1": "implausible_quantity",
        "T4:1": rules.NEGATIVE_PRICE,
    }
    assert violations["T2:1"]["reason"] == "quantity 5000 is more than a till sells on one line"
    assert violations["T4:1"]["reason"] == (
        "unit_price '-1.00' is negative; quantity 5000 is more than a till sells on one line"
    )


def test_a_declared_rule_on_master_data_and_its_precedence(spark, monkeypatch):
    # declared first among the violations: it names itself before a missing required field
    declare(monkeypatch, NO_AT_SIGN, before=rules.MISSING_KEY)
    rows = [
        customer("C1"),
        customer("C2", email="ada.example.com"),
        customer("C3", email="nobody", updated=None),
        customer("C4", email="x@y"),  # only the declared warning: kept, flagged
    ]
    result = silver.clean_master_data(bronze(spark, BRONZE_CUSTOMERS, rows), SILVER_CUSTOMERS, batch_id=BATCH)
    out = collect_all(result)
    assert {r["customer_id"]: r["quality_flags"] for r in out.accepted} == {
        "C1": [],
        "C4": [rules.IMPLAUSIBLE_EMAIL],
    }
    by_key = {r["record_key"].split("@")[0]: r for r in out.violations}
    assert by_key["C2"]["rule"] == "no_at_sign"
    # every failure is in the reason, the warning's too, in precedence order
    assert by_key["C2"]["reason"] == (
        "email 'ada.example.com' has no @; email 'ada.example.com' is not a plausible e-mail address"
    )
    assert by_key["C3"]["rule"] == "no_at_sign"
    assert by_key["C3"]["reason"].startswith("email 'nobody' has no @; updated_at is missing")


def test_a_changed_message_is_what_quarantine_rows_say(spark, monkeypatch):
    old = rules.RULE[rules.ZERO_QUANTITY]
    changed = rules.Rule(
        old.name, old.outcome, old.meaning, old.applies_to, (rules.When("", "{value} = 0", "no units of {column}"),)
    )
    monkeypatch.setattr(rules, "RULES", tuple(changed if r is old else r for r in rules.RULES))
    (violation,) = collect_all(run_sales(spark, [sale("T1", qty="0")])).violations
    assert (violation["rule"], violation["reason"]) == (rules.ZERO_QUANTITY, "no units of quantity")


def test_every_declared_form_is_judged_by_silver(spark, monkeypatch):
    """Plan every Silver judgement and record the forms it renders: each declared form of a
    quarantining rule is among them, so no declaration is dead text."""
    rendered: set[tuple[str, str]] = set()
    declared_when = rules.Rule.when

    def recording(self, form=""):
        rendered.add((self.name, form))
        return declared_when(self, form)

    monkeypatch.setattr(rules.Rule, "when", recording)
    known = default_known(spark)
    run_sales(spark, [sale()], [({"transaction_id": "E1", "lines": []}, D)])
    for spec in master_data():
        silver.clean_master_data(bronze(spark, spec.refines, [{}]), spec, batch_id=BATCH)
    silver.clean_inventory(bronze(spark, BRONZE_INVENTORY, [{}]), known, lateness_days=2, batch_id=BATCH)

    declared = {(r.name, w.form) for r in rules.RULES if r.outcome != rules.INGEST_REJECTS for w in r.forms}
    assert declared - rendered == set()
    # and the ingest rules, judged while parsing, declare no condition
    assert all(not r.forms for r in rules.RULES if r.outcome == rules.INGEST_REJECTS)


def test_a_form_missing_a_placeholder_is_refused():
    with pytest.raises(KeyError, match="needs {lateness_days}"):
        judging.check(rules.LATE_EVENT)
    with pytest.raises(KeyError, match="declares no form 'nope'"):
        judging.check(rules.INVALID_TYPE, "nope", column="x")


def test_a_rule_on_a_column_the_table_lacks_is_refused(spark, monkeypatch):
    misspelt = rules.Rule(
        "misspelt", rules.RULE_VIOLATIONS, "", SALES, IMPLAUSIBLE_QUANTITY.forms, on=("silver.sales_lines.quantiy",)
    )
    declare(monkeypatch, misspelt, before=rules.ZERO_QUANTITY)
    with pytest.raises(ValueError, match="silver.sales_lines has no column quantiy"):
        run_sales(spark, [sale()])


def test_a_fail_rule_stops_the_run_naming_the_records(spark, monkeypatch):
    over_budget = rules.Rule(
        "over_budget",
        rules.FAILS_THE_RUN,
        "a price no till may ring up",
        SALES,
        (rules.When("", "{value} > 500", "{column} {value} is over budget"),),
        on=("silver.sales_lines.unit_price",),
        severity=rules.Severity.FAIL,
    )
    clean = run_sales(spark, [sale("T1"), sale("T2", price="900.00")])
    silver.refuse_fatal(clean.classified, "silver sales")  # no fail rule declared: nothing to refuse
    declare(monkeypatch, over_budget, before=rules.ZERO_QUANTITY)
    result = run_sales(spark, [sale("T1"), sale("T2", price="900.00")])
    with pytest.raises(silver.FatalRecords, match=r"\(T2:1\): over_budget: unit_price 900.00 is over budget"):
        silver.refuse_fatal(result.classified, "silver sales")
    # a fail rule's outcome is declared with it
    with pytest.raises(ValueError, match="a fail rule's outcome is fails_the_run"):
        rules.Rule("x", rules.RULE_VIOLATIONS, "", SALES, severity=rules.Severity.FAIL)
