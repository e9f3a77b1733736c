"""Chains (multi-shot): a row whose `image` (or `last_image`) is `@<custom_id>` starts on
the last frame of that row's video.

The producer's part: find each chained row's parent in the same manifest and write the
links. A chained item is written `waiting_parent` (never queued); once the whole manifest is read
(a parent may come after its child), `ChainGraph.resolve` checks every link and reports,
one line each naming the file, line and field: a parent no row has, a row chained on
itself, a loop of rows chained on each other, two different parents in one row. A parent
must be in the same manifest: a batch is one unit of work, and a row of another batch is
out of reach of this one's cancel and retry. The links go on the items before the batch is
committed: `parent`/`parent_seq` on a child, `children` (seqs) on a parent. A child whose
parent is already a failed `invalid_row` item (skipped with --skip-invalid) ends
`parent_failed` at once.

What is checked when: at submit, the link (above), and the child's other fields against
its provider and model like any row; the frame itself (format, size, aspect ratio) cannot
be checked before the parent's video exists: the provider judges it at the child's submit,
and a refusal fails the child like any refused input. The worker side (releasing a child
with its parent's frame, ending the children of a failed parent) is
genbatch/worker/chains.py.

Memory: the graph keeps every row's custom_id and seq (tens of bytes a row) while the
manifest is read, so chains can point forwards; it is dropped at commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from genbatch.errors import ManifestError
from genbatch.images import CHAIN_PREFIX, is_chained
from genbatch.models import GenerationRequest, ItemState
from genbatch.store import JobStore, item_id

CHAIN_FIELDS = ("image", "last_image")
# Item fields (records.Item): a child's parent custom_id and seq; a parent's children.
PARENT, PARENT_SEQ, CHILDREN = "parent", "parent_seq", "children"


def parent_of(request: GenerationRequest) -> tuple[str, str] | None:
    """(field, parent custom_id) of a chained request's first chained image, else None."""
    for name in CHAIN_FIELDS:
        ref = getattr(request, name)
        if is_chained(ref):
            return name, ref[len(CHAIN_PREFIX):].strip()
    return None


def mark(record: dict[str, str], request: GenerationRequest) -> None:
    """Make a valid row's item record a waiting child when the row is chained."""
    link = parent_of(request)
    if link is not None:
        record["state"] = ItemState.WAITING.value
        record[PARENT] = link[1]


@dataclass(slots=True)
class _Child:
    line: int
    field: str
    parent: str


@dataclass
class ChainGraph:
    """The chain links of one manifest, collected row by row and checked at the end."""

    path: str
    seqs: dict[str, int] = field(default_factory=dict)  # custom_id -> seq, every row
    children: dict[int, _Child] = field(default_factory=dict)  # child seq -> its link
    problems: dict[int, ManifestError] = field(default_factory=dict)  # seq -> its problem
    invalid: list[int] = field(default_factory=list)  # seqs of invalid rows (failed items)

    def see(self, seq: int, line: int, custom_id: str | None,
            request: GenerationRequest | None) -> None:
        """One row, in manifest order (`request` None: an invalid row)."""
        if custom_id is not None:
            self.seqs.setdefault(custom_id, seq)
        if request is None:
            self.invalid.append(seq)
            return
        link = parent_of(request)
        if link is None:
            return
        self.children[seq] = _Child(line, *link)
        parents = {getattr(request, n)[len(CHAIN_PREFIX):].strip()
                   for n in CHAIN_FIELDS if is_chained(getattr(request, n))}
        if len(parents) > 1:
            self.problems[seq] = ManifestError(
                self.path, line, "last_image", "a row chains on one parent only: image and "
                "last_image name different rows")

    @property
    def empty(self) -> bool:
        return not self.children

    def resolve(self) -> list[ManifestError]:
        """Every broken link: missing parent, self-reference, loop (each row of a loop
        reported on its own line). The links that remain are `links()`."""
        for seq, child in self.children.items():
            if seq in self.problems:
                continue
            parent = self.seqs.get(child.parent)
            if not child.parent:
                self._problem(seq, "@ must be followed by the custom_id of the parent row")
            elif parent is None:
                self._problem(seq, f"@{child.parent}: no row of this manifest has custom_id "
                              f"{child.parent!r} (a parent must be in the same manifest)")
            elif parent == seq:
                self._problem(seq, f"@{child.parent}: a row cannot chain on itself")
        for loop in self._loops():
            names = " → ".join(self._name(s) for s in [*loop, loop[0]])
            for seq in loop:
                self._problem(seq, f"the chain loops back on itself: {names}")
        return sorted(self.problems.values(), key=lambda e: e.line or 0)

    def links(self) -> dict[int, int]:
        """child seq -> parent seq, for every link without a problem."""
        return {seq: self.seqs[c.parent] for seq, c in self.children.items()
                if seq not in self.problems and c.parent in self.seqs}

    def _problem(self, seq: int, reason: str) -> None:
        child = self.children[seq]
        self.problems.setdefault(seq, ManifestError(self.path, child.line, child.field, reason))

    def _name(self, seq: int) -> str:
        """A row's custom_id (a scan: only rows of a loop are named)."""
        return next((cid for cid, s in self.seqs.items() if s == seq), str(seq))

    def _loops(self) -> Iterator[list[int]]:
        """Each loop of parent links once (a chain that ends in a loop is not one)."""
        parent = {s: self.seqs[c.parent] for s, c in self.children.items()
                  if c.parent in self.seqs and self.seqs[c.parent] != s}
        done: set[int] = set()
        for start in parent:
            path: dict[int, int] = {}
            seq: int | None = start
            while seq is not None and seq not in done and seq not in path:
                path[seq] = len(path)
                seq = parent.get(seq)
            done.update(path)
            if seq is not None and seq in path:
                order = list(path)
                yield order[path[seq]:]


def link_fields(links: Mapping[int, int], batch_id: str) -> dict[str, dict[str, str]]:
    """The fields to set per item id for `links`: each child's parent seq, each parent's
    children in manifest order."""
    fields: dict[str, dict[str, str]] = {}
    kids: dict[int, list[int]] = {}
    for child, parent in sorted(links.items()):
        fields[item_id(batch_id, child)] = {PARENT_SEQ: str(parent)}
        kids.setdefault(parent, []).append(child)
    for parent, seqs in kids.items():
        fields.setdefault(item_id(batch_id, parent), {})[CHILDREN] = ",".join(map(str, seqs))
    return fields


def write_links(store: JobStore, batch_id: str, graph: ChainGraph) -> None:
    """Before commit: set the links on the items; a child with a broken link fails
    `invalid_row` (with --skip-invalid; otherwise the manifest was refused), and every
    descendant of a row that failed at submit ends `parent_failed` at once."""
    for seq, problem in graph.problems.items():
        store.items.transition(item_id(batch_id, seq), [ItemState.WAITING], ItemState.FAILED,
                               fields={"error_code": "invalid_row",
                                       "error_message": f"{problem.field}: {problem.reason}"})
    links = graph.links()
    if links:
        store.items.set_fields(link_fields(links, batch_id))
    dead = set(graph.invalid) | set(graph.problems)
    kids: dict[int, list[int]] = {}
    for child, parent in links.items():
        kids.setdefault(parent, []).append(child)
    todo = [s for s in dead if s in kids]
    while todo:
        parent = todo.pop()
        for child in kids.get(parent, ()):
            store.items.transition(
                item_id(batch_id, child), [ItemState.WAITING], ItemState.PARENT_FAILED,
                fields={"error_code": ItemState.PARENT_FAILED.value,
                        "error_message": PARENT_INVALID})
            todo.append(child)


PARENT_INVALID = "its parent row is invalid (see its own error); fix both and resubmit them"
