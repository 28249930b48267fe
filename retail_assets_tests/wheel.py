"""The project's real wheel, built as CI builds it, and what its metadata declares.

`build_wheel` builds from a private copy of the working tree — committed history plus every
uncommitted change — so the version setuptools-scm computes is the one a build of this checkout
gets, and neither the checkout's `build/` (which keeps modules deleted since the last build) nor
another test building at the same moment is ever involved. `--no-build-isolation` uses the build
backend the `dev` extra installs, so no network is needed.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from retail_assets.lib.settings import project_root

BUILD_TIMEOUT_S = 300


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120)
    return done.stdout


def is_git_work_tree(path: Path) -> bool:
    return (path / ".git").exists() and shutil.which("git") is not None


def source_files(source: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of a checkout (what `git add -A` would
    commit), relative to it; files deleted from the tree are not listed."""
    listed = _git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return [name for name in dict.fromkeys(listed) if name and (source / name).is_file()]


def copy_tree(source: Path, target: Path) -> None:
    """`source` as it is on disk: with git, a clone of its history with the working tree's files
    over it (so uncommitted changes stay uncommitted); without, a plain copy of its files."""
    if not is_git_work_tree(source):
        shutil.copytree(
            source, target, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".venv")
        )
        return
    _git(target.parent, "clone", "--quiet", "--shared", "--no-checkout", str(source), str(target))
    # The source's commit even when its HEAD is detached (as in a CI checkout of a pull request).
    _git(target, "update-ref", "--no-deref", "HEAD", _git(source, "rev-parse", "HEAD").strip())
    for name in source_files(source):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    _git(target, "reset", "--quiet")  # the index is HEAD's: changed files show as changed


def build_wheel(dest: Path, *, source: Path | None = None) -> Path:
    """Build the wheel of `source` (this checkout by default) into `dest`; return its path."""
    source = (source or project_root()).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="retail-wheel-") as scratch:
        tree, out = Path(scratch) / "src", Path(scratch) / "dist"
        copy_tree(source, tree)
        env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(out),
                str(tree),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=BUILD_TIMEOUT_S,
        )
        assert done.returncode == 0, (
            f"pip wheel failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        (wheel,) = out.glob("retail_assets-*.whl")
        return Path(shutil.move(str(wheel), dest / wheel.name))


def wheel_metadata(wheel: Path) -> email.message.Message:
    """The wheel's `METADATA` (core metadata: Name, Version, Requires-Dist, Provides-Extra)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def requirements(metadata: email.message.Message, extra: str | None = None) -> dict[str, Requirement]:
    """Requirements by canonical name: the unconditional ones (`extra=None`), or those an extra adds.

    A requirement counts for a platform-conditional marker too: only `extra` decides here."""
    found = {}
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if extra is None:
            wanted = marker is None or "extra" not in str(marker)
        else:
            wanted = marker is not None and "extra" in str(marker) and marker.evaluate({"extra": extra})
        if wanted:
            found[canonicalize_name(requirement.name)] = requirement
    return found


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()
