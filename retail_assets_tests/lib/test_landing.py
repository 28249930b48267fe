from __future__ import annotations

import datetime as dt
import os
import time

from retail_assets.lib.engine.base import PartitionRange
from retail_assets.lib.sources.landing import arrival_date_of, scan_landing


def _touch(path, content=b"x", mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_scan_lists_complete_files_sorted_with_arrival_dates(tmp_path):
    _touch(tmp_path / "sales/2026-10-02/pos_S002_20261002.csv", b"abc")
    _touch(tmp_path / "sales/2026-10-01/pos_S001_20261001.csv")
    _touch(tmp_path / "sales/2026-10-01/nested/deeper.csv")
    _touch(tmp_path / "customers/2026-10-01/customers_1.jsonl")  # another source

    files = scan_landing(tmp_path, "sales")

    assert [f.relative for f in files] == [
        "sales/2026-10-01/nested/deeper.csv",
        "sales/2026-10-01/pos_S001_20261001.csv",
        "sales/2026-10-02/pos_S002_20261002.csv",
    ]
    assert [f.arrival_date for f in files] == [dt.date(2026, 10, 1), dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
    last = files[-1]
    assert last.source == "sales" and last.size == 3 and last.path == tmp_path / last.relative
    assert last.path.is_absolute()


def test_scan_ignores_hidden_underscored_temporary_and_unstable_files(tmp_path):
    now = time.time()
    old = now - 600
    keep = _touch(tmp_path / "sales/2026-10-01/ok.csv", mtime=old)
    for name in (
        ".hidden.csv",
        "_SUCCESS",
        "a.csv.tmp",
        "b.csv.part",
        "c.csv.inprogress",
        "d.csv.crdownload",
        "bad\x07name.csv",
    ):
        _touch(tmp_path / "sales/2026-10-01" / name, mtime=old)
    _touch(tmp_path / "sales/_staging/2026-10-01/x.csv", mtime=old)
    _touch(tmp_path / "sales/.tmp/x.csv", mtime=old)
    _touch(tmp_path / "sales/2026-10-01/growing.csv", mtime=now - 5)

    stable = scan_landing(tmp_path, "sales", stable_seconds=30, now=now)
    assert [f.path for f in stable] == [keep]
    # without a stability requirement the fresh file counts too
    assert len(scan_landing(tmp_path, "sales", now=now)) == 2


def test_scan_skips_symlinks_and_escaping_paths(tmp_path):
    outside = _touch(tmp_path / "elsewhere/secret.csv")
    landing = tmp_path / "landing"
    _touch(landing / "sales/2026-10-01/real.csv")
    (landing / "sales/2026-10-01/link.csv").symlink_to(outside)
    (landing / "sales/linked_dir").symlink_to(outside.parent, target_is_directory=True)
    # a source folder that is itself a link out of the landing root is not read at all
    (landing / "products").symlink_to(outside.parent, target_is_directory=True)

    assert [f.relative for f in scan_landing(landing, "sales")] == ["sales/2026-10-01/real.csv"]
    assert scan_landing(landing, "products") == []
    assert scan_landing(landing, "stores") == []  # missing source folder


def test_arrival_date_nearest_date_folder_else_mtime_utc(tmp_path):
    mtime = dt.datetime(2026, 10, 3, 23, 30, tzinfo=dt.UTC).timestamp()
    assert arrival_date_of("sales/2026-10-01/sub/2026-10-02/f.csv", mtime) == dt.date(2026, 10, 2)
    assert arrival_date_of("sales/2026-10-01/sub/f.csv", mtime) == dt.date(2026, 10, 1)
    assert arrival_date_of("sales/f.csv", mtime) == dt.date(2026, 10, 3)
    assert arrival_date_of("sales/2026-13-45/f.csv", mtime) == dt.date(2026, 10, 3)  # not a real date
    assert arrival_date_of("sales/2026-10-05.csv", mtime) == dt.date(2026, 10, 3)  # file name is not a folder

    _touch(tmp_path / "sales/loose.csv", mtime=mtime)
    (f,) = scan_landing(tmp_path, "sales")
    assert f.arrival_date == dt.date(2026, 10, 3)


def test_scan_filters_by_partition_range(tmp_path):
    for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
        _touch(tmp_path / f"inventory/{day}/inventory.csv")
    files = scan_landing(tmp_path, "inventory", partitions=PartitionRange(dt.date(2026, 10, 2), dt.date(2026, 10, 3)))
    assert [f.arrival_date.isoformat() for f in files] == ["2026-10-02", "2026-10-03"]


def test_scan_of_ten_thousand_files(tmp_path):
    # Its speed is a benchmark figure (`retail-assets bench`: sensor_tick_s), not a timed test.
    folder = tmp_path / "sales/2026-10-01"
    folder.mkdir(parents=True)
    for i in range(10_000):
        (folder / f"pos_{i:05d}.csv").write_bytes(b"")
    files = scan_landing(tmp_path, "sales", stable_seconds=1, now=time.time() + 60)
    assert len(files) == 10_000
    assert [f.relative for f in files[:2]] == ["sales/2026-10-01/pos_00000.csv", "sales/2026-10-01/pos_00001.csv"]


def test_a_listing_through_the_files_api_is_judged_as_the_scan_on_disk(tmp_path):
    """The databricks environment's sensor sees the landing volume only as a listing (path, size,
    modification time); the same tree must give the same files, days and verdicts as on disk."""
    from retail_assets.lib.sources.landing import listed_landing_file

    now = time.time()
    old = now - 600
    for relative, mtime in [
        ("sales/2026-10-01/pos_S001_20261001.csv", old),
        ("sales/2026-10-01/nested/deeper.csv", old),
        ("sales/loose.csv", dt.datetime(2026, 10, 3, 12, tzinfo=dt.UTC).timestamp()),
        ("sales/2026-10-02/.hidden.csv", old),
        ("sales/2026-10-02/_SUCCESS", old),
        ("sales/2026-10-02/pos.csv.tmp", old),
        ("sales/_staging/2026-10-02/pos.csv", old),
        ("sales/2026-10-02/still_writing.csv", now),
        ("sales/2026-13-45/not_a_date.csv", old),
    ]:
        _touch(tmp_path / relative, b"abcd", mtime=mtime)
    volume = "/Volumes/retail/prod_bronze/landing"
    listing = [
        (f"{volume}/{p.relative_to(tmp_path).as_posix()}", p.stat().st_size, p.stat().st_mtime)
        for p in tmp_path.rglob("*")
        if p.is_file()
    ]

    for window in (0, 60):
        on_disk = scan_landing(tmp_path, "sales", stable_seconds=window, now=now)
        listed = sorted(
            (
                f
                for path, size, mtime in listing
                if (f := listed_landing_file(volume, path, size=size, mtime=mtime, stable_seconds=window, now=now))
            ),
            key=lambda f: f.relative,
        )
        assert [(f.relative, f.arrival_date, f.size, f.mtime) for f in listed] == [
            (f.relative, f.arrival_date, f.size, f.mtime) for f in on_disk
        ]
        assert all(str(f.path).startswith(volume + "/sales/") for f in listed)
    assert "sales/2026-10-02/still_writing.csv" not in {f.relative for f in listed}
    assert {f.relative for f in listed} >= {"sales/loose.csv", "sales/2026-13-45/not_a_date.csv"}
