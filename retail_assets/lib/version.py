"""Which build of the project this is: the version of the installed distribution.

setuptools-scm computes it from git when the wheel is built (`[tool.setuptools_scm]` in
pyproject.toml): `0.1.dev135+gfaab43c9b` is the 135th commit, `faab43c9b`; an uncommitted tree
adds `.d<date>`; a tagged commit is the tag's version. Every build of another commit is therefore
another version, and the version names the wheel a Databricks cluster installs: a code server
whose wheel was never uploaded finds no file under its name instead of running an older one.
"""

from __future__ import annotations

import re
from importlib.metadata import version

from packaging.version import Version

DISTRIBUTION = "retail-assets"
# The `g<sha>` segment setuptools-scm puts in the local version label.
_COMMIT = re.compile(r"(?:^|\.)g([0-9a-f]{7,40})(?:\.|$)")


def code_version() -> str:
    """The installed distribution's version (what the wheel in use was built as)."""
    return version(DISTRIBUTION)


def wheel_filename(of: str | None = None) -> str:
    """The file name of the project's wheel of version `of` (this installation's by default),
    as `pip wheel` names it: the distribution name with `_`, the version in canonical form."""
    return f"{DISTRIBUTION.replace('-', '_')}-{Version(of or code_version())}-py3-none-any.whl"


def commit_of(of: str | None = None) -> str | None:
    """The abbreviated git commit a version was built from, None for a tagged release or a build
    without git metadata (the fallback version)."""
    _, _, local = (of or code_version()).partition("+")
    found = _COMMIT.search(local)
    return found.group(1) if found else None
