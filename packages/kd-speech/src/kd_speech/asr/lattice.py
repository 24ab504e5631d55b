"""Word lattices in HTK Standard Lattice Format (SLF): parsing, best path and n-best paths.

A lattice is a directed acyclic graph whose nodes carry words (``W=`` on ``I=`` lines; a ``W=`` on a link
line is read too) and whose links carry an acoustic log-likelihood ``a=`` and, where the writer gives one,
an LM log-probability ``l=``. A path's score is ``Σ a + lm_weight·Σ l + word_penalty·(words)``; scores are
natural logs (a ``base=`` header other than e is converted). Pocketsphinx writes ``a=`` and a posterior
``p=`` but no ``l=``: :meth:`Lattice.with_link_lm` fills link LM scores from any bigram function (the
decoder's own n-gram model, say), so that the n-best paths are ranked by acoustic and LM evidence both.

The n-best paths come from a best-first (A*) search whose heuristic is the exact best completion score
of each node (one backward Viterbi pass), so complete paths leave the queue in score order: the k best
paths of a DAG, and with ``unique=True`` the best path of each of the first k distinct word sequences.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from kd_core.errors import ConfigError

#: Node or link labels that are not words of the transcript.
NON_WORDS = frozenset({"", "!NULL", "!SENT_START", "!SENT_END", "<s>", "</s>", "<sil>", "!SIL", "sil"})
SENTENCE_START = frozenset({"!SENT_START", "<s>"})


def is_word(label: str | None) -> bool:
    """Whether ``label`` is a transcript word: not a null/sentence/silence label, ``[NOISE]`` or ``++UH++``."""
    if label is None or label in NON_WORDS:
        return False
    return not (label.startswith("[") and label.endswith("]")) and not (label.startswith("++")
                                                                         and label.endswith("++"))


@dataclass(frozen=True)
class LatticeNode:
    """One node: an id, a time in seconds (0.0 when the file gives none) and an optional word."""

    id: int
    time: float = 0.0
    word: str | None = None


@dataclass(frozen=True)
class LatticeLink:
    """One link ``start → end`` with an acoustic and an LM log score (natural log; 0.0 when absent)."""

    id: int
    start: int
    end: int
    acoustic: float = 0.0
    lm: float = 0.0
    word: str | None = None


@dataclass(frozen=True)
class LatticePath:
    """A path through a lattice: its words, summed acoustic and LM scores, combined score and link ids."""

    words: tuple[str, ...]
    acoustic: float
    lm: float
    score: float
    links: tuple[int, ...]

    @property
    def text(self) -> str:
        """The words joined by spaces."""
        return " ".join(self.words)


@dataclass
class Lattice:
    """A word lattice (a DAG): nodes, links, start and end node ids, and the header's LM scale and penalty."""

    nodes: dict[int, LatticeNode]
    links: list[LatticeLink]
    start: int
    end: int
    lm_scale: float = 1.0
    word_penalty: float = 0.0
    _order: list[int] = field(default_factory=list, init=False, repr=False)
    _exits: dict[int, list[LatticeLink]] = field(default_factory=dict, init=False, repr=False)

    def __repr__(self) -> str:
        return (f"Lattice({len(self.nodes)} nodes, {len(self.links)} links, start={self.start}, end={self.end}, "
                f"lm_scale={self.lm_scale}, word_penalty={self.word_penalty})")

    def __post_init__(self) -> None:
        for name, node in (("start", self.start), ("end", self.end)):
            if node not in self.nodes:
                raise ConfigError(f"lattice {name}", "the id of a node of the lattice", node)
        self._exits = {node: [] for node in self.nodes}
        for link in self.links:
            if link.start not in self.nodes or link.end not in self.nodes:
                raise ConfigError("lattice link", "start and end ids of nodes of the lattice",
                                  f"J={link.id} S={link.start} E={link.end}")
            self._exits[link.start].append(link)
        self._order = self._topological_order()

    # -- structure -------------------------------------------------------------------------------------

    def _topological_order(self) -> list[int]:
        """Nodes reachable from ``start`` in topological order; a cycle is a ``ConfigError``."""
        order: list[int] = []
        state: dict[int, int] = {}  # 1 = on the stack, 2 = done
        stack: list[tuple[int, Iterator[LatticeLink]]] = [(self.start, iter(self._exits[self.start]))]
        state[self.start] = 1
        while stack:
            node, exits = stack[-1]
            for link in exits:
                seen = state.get(link.end)
                if seen == 1:
                    raise ConfigError("lattice", "a directed acyclic graph", f"a cycle through node {link.end}")
                if seen is None:
                    state[link.end] = 1
                    stack.append((link.end, iter(self._exits[link.end])))
                    break
            else:
                stack.pop()
                state[node] = 2
                order.append(node)
        order.reverse()
        return order

    def exits(self, node: int) -> list[LatticeLink]:
        """The links leaving ``node``."""
        return self._exits[node]

    def link_words(self, link: LatticeLink) -> tuple[str, ...]:
        """The transcript words a link adds to a path: its own word, then its end node's word."""
        return tuple(w for w in (link.word, self.nodes[link.end].word) if is_word(w))

    def _start_words(self) -> tuple[str, ...]:
        word = self.nodes[self.start].word
        return (word,) if is_word(word) else ()

    def _link_score(self, link: LatticeLink, lm_weight: float, word_penalty: float) -> float:
        return link.acoustic + lm_weight * link.lm + word_penalty * len(self.link_words(link))

    def _scales(self, lm_weight: float | None, word_penalty: float | None) -> tuple[float, float]:
        return (self.lm_scale if lm_weight is None else float(lm_weight),
                self.word_penalty if word_penalty is None else float(word_penalty))

    def _completion(self, lm_weight: float, word_penalty: float) -> dict[int, float]:
        """Best score from each node to ``end`` (``-inf`` where ``end`` cannot be reached)."""
        best = {node: -math.inf for node in self._order}
        best[self.end] = 0.0
        for node in reversed(self._order):
            for link in self._exits[node]:
                tail = best.get(link.end, -math.inf)
                if tail > -math.inf:
                    best[node] = max(best[node], self._link_score(link, lm_weight, word_penalty) + tail)
        return best

    def _path(self, links: Sequence[LatticeLink], lm_weight: float, word_penalty: float) -> LatticePath:
        words = list(self._start_words())
        for link in links:
            words.extend(self.link_words(link))
        acoustic = math.fsum(link.acoustic for link in links)
        lm = math.fsum(link.lm for link in links)
        return LatticePath(tuple(words), acoustic, lm, acoustic + lm_weight * lm + word_penalty * len(words),
                           tuple(link.id for link in links))

    # -- search ----------------------------------------------------------------------------------------

    def best_path(self, lm_weight: float | None = None, word_penalty: float | None = None) -> LatticePath:
        """The highest-scoring path from start to end (Viterbi); the header's scales when none are given."""
        paths = self.nbest_paths(1, lm_weight, word_penalty, unique=False)
        return paths[0]

    def nbest_paths(self, n: int, lm_weight: float | None = None, word_penalty: float | None = None,
                    unique: bool = True, max_expansions: int = 200_000) -> list[LatticePath]:
        """The ``n`` best paths, best first; with ``unique`` only the best path of each distinct word sequence.

        Stops early (with fewer paths) after ``max_expansions`` queue pops, so a huge lattice stays bounded.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("n", "an integer >= 1", n)
        lw, wp = self._scales(lm_weight, word_penalty)
        completion = self._completion(lw, wp)
        if completion[self.start] == -math.inf:
            raise ConfigError("lattice", "a path from the start node to the end node", "none")
        # entries: (g, node, parent entry index, link); the queue holds (-(g + h), tie, entry index)
        entries: list[tuple[float, int, int, LatticeLink | None]] = [(0.0, self.start, -1, None)]
        queue: list[tuple[float, int, int]] = [(-completion[self.start], 0, 0)]
        found: list[LatticePath] = []
        seen: set[tuple[str, ...]] = set()
        pops = 0
        while queue and len(found) < n and pops < max_expansions:
            _, _, index = heapq.heappop(queue)
            pops += 1
            g, node, _, _ = entries[index]
            if node == self.end:
                links: list[LatticeLink] = []
                cursor = index
                while entries[cursor][3] is not None:
                    links.append(entries[cursor][3])  # type: ignore[arg-type]
                    cursor = entries[cursor][2]
                path = self._path(links[::-1], lw, wp)
                if not unique or path.words not in seen:
                    seen.add(path.words)
                    found.append(path)
                continue
            for link in self._exits[node]:
                tail = completion.get(link.end, -math.inf)
                if tail == -math.inf:
                    continue
                g_next = g + self._link_score(link, lw, wp)
                entries.append((g_next, link.end, index, link))
                heapq.heappush(queue, (-(g_next + tail), len(entries), len(entries) - 1))
        return found

    def align(self, words: Sequence[str], lm_weight: float | None = None,
              word_penalty: float | None = None) -> LatticePath | None:
        """The best path whose word sequence is exactly ``words`` (fillers skipped), or ``None`` if none is."""
        lw, wp = self._scales(lm_weight, word_penalty)
        target = tuple(words)
        start_words = self._start_words()
        if target[: len(start_words)] != start_words:
            return None
        # best[(node, position)] = (score, back-pointer (node, position, link))
        best: dict[tuple[int, int], tuple[float, tuple[int, int, LatticeLink] | None]] = {
            (self.start, len(start_words)): (0.0, None)}
        for node in self._order:
            for position in range(len(target) + 1):
                here = best.get((node, position))
                if here is None:
                    continue
                for link in self._exits[node]:
                    added = self.link_words(link)
                    if target[position: position + len(added)] != added:
                        continue
                    key = (link.end, position + len(added))
                    score = here[0] + self._link_score(link, lw, wp)
                    if key not in best or score > best[key][0]:
                        best[key] = (score, (node, position, link))
        if (self.end, len(target)) not in best:
            return None
        links: list[LatticeLink] = []
        key = (self.end, len(target))
        while best[key][1] is not None:
            node, position, link = best[key][1]  # type: ignore[misc]
            links.append(link)
            key = (node, position)
        return self._path(links[::-1], lw, wp)

    # -- rescoring support -----------------------------------------------------------------------------

    def with_link_lm(self, bigram: Callable[[str | None, str], float]) -> Lattice:
        """A copy whose link LM scores are ``bigram(context, word)`` for the word each link adds.

        ``context`` is the link's start-node word, ``"<s>"`` at a sentence start, and ``None`` after a filler
        or null node (a unigram back-off: the approximation of an n-gram on a node-labelled lattice). Links
        that add no word get 0.0; a link adding two words (a link word and a node word) chains them, and a
        link into the end node adds ``bigram(context, "</s>")``.
        """
        links = []
        for link in self.links:
            before = self.nodes[link.start].word
            context: str | None = before if is_word(before) else ("<s>" if (
                before in SENTENCE_START or link.start == self.start) else None)
            total = 0.0
            for word in self.link_words(link):
                total += bigram(context, word)
                context = word
            if link.end == self.end:
                total += bigram(context, "</s>")
            links.append(replace(link, lm=total))
        return Lattice(dict(self.nodes), links, self.start, self.end, self.lm_scale, self.word_penalty)


_FIELD = re.compile(r"(\S+?)=(\"[^\"]*\"|\S*)")


def _fields(line: str) -> dict[str, str]:
    return {key: value.strip('"') for key, value in _FIELD.findall(line)}


def _number(fields: dict[str, str], key: str, default: float, where: str) -> float:
    if key not in fields:
        return default
    try:
        value = float(fields[key])
    except ValueError:
        raise ConfigError(f"lattice {where} '{key}'", "a number", fields[key]) from None
    if math.isnan(value):
        raise ConfigError(f"lattice {where} '{key}'", "a number", fields[key])
    return value


def parse_htk_slf(text: str) -> Lattice:
    """Parse the text of an HTK SLF lattice (one utterance) into a :class:`Lattice`.

    Reads ``start=``/``end=`` (else the node without incoming / outgoing links), ``lmscale=``,
    ``wdpenalty=`` and ``base=`` (log base of the scores; ``base=0`` is not supported).
    """
    header: dict[str, str] = {}
    nodes: dict[int, LatticeNode] = {}
    links: list[LatticeLink] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = _fields(line)
        where = f"line {number}"
        try:
            if "I" in fields:
                node_id = int(fields["I"])
                nodes[node_id] = LatticeNode(node_id, _number(fields, "t", 0.0, where), fields.get("W"))
            elif "J" in fields:
                links.append(LatticeLink(int(fields["J"]), int(fields["S"]), int(fields["E"]),
                                         _number(fields, "a", 0.0, where), _number(fields, "l", 0.0, where),
                                         fields.get("W")))
            else:
                header.update(fields)
        except (KeyError, ValueError) as err:
            raise ConfigError("lattice", "HTK SLF node (I=, t=, W=) and link (J=, S=, E=, a=, l=) lines",
                              raw.strip(), hint=f"{where}: {err!r}") from None
    if not nodes:
        raise ConfigError("lattice", "an HTK SLF lattice with at least one node (I= lines)", text[:80])
    base = _number(header, "base", math.e, "header")
    if base <= 0 or base == 1:
        raise ConfigError("lattice header 'base'", "a log base > 0 other than 1", header.get("base"))
    if base != math.e:
        scale = math.log(base)
        links = [replace(link, acoustic=link.acoustic * scale, lm=link.lm * scale) for link in links]
    has_in = {link.end for link in links}
    has_out = {link.start for link in links}
    start = int(header["start"]) if "start" in header else _only(set(nodes) - has_in, "start")
    end = int(header["end"]) if "end" in header else _only(set(nodes) - has_out, "end")
    return Lattice(nodes, links, start, end, _number(header, "lmscale", 1.0, "header"),
                   _number(header, "wdpenalty", 0.0, "header"))


def _only(candidates: set[int], what: str) -> int:
    if len(candidates) != 1:
        raise ConfigError(f"lattice {what}", f"a '{what}=' header or exactly one {what} node",
                          sorted(candidates)[:5])
    return next(iter(candidates))


def read_htk_slf(path: str | Path) -> Lattice:
    """Read an HTK SLF file (plain text) into a :class:`Lattice`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("lattice path", "a readable HTK SLF text file", str(path), hint=str(err)) from None
    return parse_htk_slf(text)
