"""Files bundled with bltx, named `bltx:NAME` in recipes (corpora, the tiny entropy model).

NAME is a plain file name inside bltx/data/corpora: a path (`bltx:../../etc/passwd`, an
absolute path, a sub-folder) is refused, so a recipe cannot reach outside the folder
through the bundled prefix.
"""

from __future__ import annotations

from pathlib import Path

from bltx.errors import BltxError

PREFIX = "bltx:"
FOLDER = Path(__file__).resolve().parent / "data" / "corpora"


def bundled_path(name: str, suffix: str, error: type[BltxError]) -> Path:
    """`NAME` -> FOLDER/NAME (or FOLDER/NAME + suffix); `error` (one line) when NAME is not
    a bundled file of that kind."""
    shown = ", ".join(f"{PREFIX}{n}" for n in bundled_names(suffix))
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise error(f"'{PREFIX}{name}' is not a bundled file name (no folders or '..'); bundled: {shown}")
    for candidate in (FOLDER / name, FOLDER / f"{name}{suffix}"):
        if candidate.is_file():
            return candidate
    raise error(f"no bundled file '{PREFIX}{name}'; bundled: {shown}")


def bundled_names(suffix: str) -> list[str]:
    """Names usable as `bltx:NAME` for files ending in `suffix` (without it)."""
    return sorted({p.name[: -len(suffix)] for p in FOLDER.iterdir() if p.is_file() and p.name.endswith(suffix)})
