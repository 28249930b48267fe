"""Personal data as Gold keeps it: e-mails and phones hashed (for joins) and masked (for people)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def normalize_email(email: Column) -> Column:
    """Trimmed, lower-cased e-mail; the form both the hash and the mask are taken from."""
    return F.lower(F.trim(email))


def hash_email(email: Column) -> Column:
    """SHA-256 hex of the normalized e-mail; null for a null or blank e-mail."""
    normalized = normalize_email(email)
    return F.when(normalized != "", F.sha2(normalized, 256))


def mask_email(email: Column) -> Column:
    """`j***@example.com`: first character of the local part, `***@`, then the domain.

    The domain is what follows the last `@`. A value without `@` keeps only its first
    character (`j***`); a null or blank e-mail gives null.
    """
    normalized = normalize_email(email)
    local = F.regexp_extract(normalized, r"^(.*)@([^@]*)$", 1)
    domain = F.regexp_extract(normalized, r"^(.*)@([^@]*)$", 2)
    has_at = normalized.contains("@")
    return (
        F.when(normalized.isNull() | (normalized == ""), F.lit(None).cast("string"))
        .when(has_at, F.concat(F.substring(local, 1, 1), F.lit("***@"), domain))
        .otherwise(F.concat(F.substring(normalized, 1, 1), F.lit("***")))
    )


def phone_digits(phone: Column) -> Column:
    """The digits of a phone number, every separator and `+` dropped; null when none."""
    digits = F.regexp_replace(phone, r"[^0-9]", "")
    return F.when(digits != "", digits)


def hash_phone(phone: Column) -> Column:
    """SHA-256 hex of the phone digits; null when the phone has no digit."""
    return F.sha2(phone_digits(phone), 256)


def mask_phone(phone: Column) -> Column:
    """The phone digits with all but the last two replaced by `*` (`*********23`)."""
    return F.regexp_replace(phone_digits(phone), r"[0-9](?=[0-9]{2})", "*")
