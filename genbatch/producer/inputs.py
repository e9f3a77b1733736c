"""Local input images: confined to allowed folders, checked once each.

A path is resolved (symlinks followed, `..` collapsed) before anything else, and must lie in
the manifest's folder or one of the input roots (GENBATCH_INPUT_ROOTS, `submit
--input-root`). A path that resolves anywhere else gets one message, the same whether or not
something exists there, so a manifest cannot probe the file system. An allowed path is then
checked by `genbatch.images.probe_image`; results are remembered per real path in a bounded
cache, so a manifest naming a different image on every row keeps a flat memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genbatch.images import ImageProblem, probe_image

MAX_CACHED_CHECKS = 4096  # real paths whose check is remembered (cleared past this)
OUTSIDE_ROOTS = ("image path is outside the manifest's folder and the allowed input folders "
                 "(add its folder with --input-root or GENBATCH_INPUT_ROOTS)")


def inside(path: Path, roots: tuple[Path, ...]) -> bool:
    """True when `path` (already resolved) is one of `roots` or below one of them."""
    return any(path.is_relative_to(root) for root in roots)


@dataclass
class LocalImages:
    """The local images of one manifest in `folder`, allowed also from `roots`."""

    folder: Path
    roots: tuple[Path, ...] = ()
    _allowed: tuple[Path, ...] = ()
    _checks: dict[Path, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()
        self._allowed = tuple(dict.fromkeys(
            root.expanduser().resolve() for root in (self.folder, *self.roots)))

    def check(self, ref: str) -> tuple[str, str | None]:
        """(the real path, or the path as given when refused; the problem, if any)."""
        path = Path(ref).expanduser()
        real = (path if path.is_absolute() else self.folder / path).resolve()
        if not inside(real, self._allowed):
            return str(path), OUTSIDE_ROOTS
        return str(real), self._probe(real)

    def _probe(self, path: Path) -> str | None:
        if path not in self._checks:
            if len(self._checks) >= MAX_CACHED_CHECKS:
                self._checks.clear()
            self._checks[path] = _problem(path)
        return self._checks[path]


def _problem(path: Path) -> str | None:
    if not path.is_file():
        return f"file not found: {path}"
    try:
        probe_image(path)
    except ImageProblem as exc:
        return str(exc)
    return None
