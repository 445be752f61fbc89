"""Character-level text from the Python standard library's own source (ships with Python)."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._checks import check_count

# Tab, newline and printable ASCII; every other character (\r, \f, non-ASCII) becomes the last
# token, shown as U+FFFD when decoded.
VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127)) + "\ufffd"
_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)


@dataclass(frozen=True)
class StdlibCorpus:
    """Token ids of the standard library's source text and where they came from.

    Attributes
    ----------
    tokens : torch.Tensor
        1-D ``torch.long`` ids into :attr:`vocab`.
    vocab : str
        One character per id; the last, ``"\\ufffd"``, stands for every character outside tab,
        newline and printable ASCII.
    files : tuple of (str, int)
        The files read, in order (paths relative to :attr:`stdlib`), and the number of characters
        each contributed (the last one may be truncated to ``max_chars``).
    python_version : str
        ``sys.version`` of the interpreter whose standard library was read.
    stdlib : str
        ``sysconfig.get_paths()["stdlib"]``.
    sha256 : str
        Hash of the text (before mapping to tokens): two corpora with the same hash are the same.
    """

    tokens: torch.Tensor
    vocab: str
    files: tuple[tuple[str, int], ...]
    python_version: str
    stdlib: str
    sha256: str

    @property
    def n_chars(self) -> int:
        return int(self.tokens.numel())

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def decode(self, ids: torch.Tensor) -> str:
        """The text of a 1-D tensor of ids (other characters show as U+FFFD)."""
        return "".join(self.vocab[i] for i in ids.tolist())

    def split(self, held_out: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(train, held)``: the last ``held_out`` fraction of the text is held out.

        The corpus is a concatenation of whole files in a shuffled order, so the held-out part
        is (up to one file cut in two) different files from the training part.
        """
        if isinstance(held_out, bool) or not isinstance(held_out, float | int):
            raise TypeError(f"held_out must be a number, got {type(held_out).__name__}")
        if not 0 < held_out < 1:
            raise ValueError(f"held_out must be in (0, 1), got {held_out}")
        cut = self.n_chars - max(1, int(round(held_out * self.n_chars)))
        return self.tokens[:cut], self.tokens[cut:]


def _eligible_files(root: Path, max_file_chars: int) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]  # prune: never walk into them
        for name in filenames:
            path = Path(dirpath, name)
            if name.endswith(".py") and not name.startswith("test_") and path.is_file():
                if path.stat().st_size <= max_file_chars:
                    out.append(path)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def encode(text: str) -> torch.Tensor:
    """Ids into :data:`VOCAB` of every character of ``text``."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lut = np.full(128, len(VOCAB) - 1, dtype=np.int64)
    for i, ch in enumerate(VOCAB[:-1]):
        lut[ord(ch)] = i
    ids = np.where(codes < 128, lut[np.minimum(codes, 127)], len(VOCAB) - 1)
    return torch.from_numpy(ids.astype(np.int64))


def stdlib_corpus(
    max_chars: int = 2_000_000, seed: int = 0, *, max_file_chars: int = 100_000
) -> StdlibCorpus:
    """Character-level text of the installed Python's standard library source files.

    No download: the text is the ``.py`` files under ``sysconfig.get_paths()["stdlib"]``,
    excluding test directories (``test``, ``tests``, ``idle_test``), ``test_*.py`` files,
    ``site-packages`` and files over ``max_file_chars`` bytes. The sorted list of those files is
    shuffled by ``random.Random(seed)`` (a private instance; the global RNG is not used) and the
    files are concatenated, separated by a blank line, until ``max_chars`` characters.

    Parameters
    ----------
    max_chars : int
        Length of the corpus in characters (fewer if the standard library is shorter).
    seed : int
        Order of the files.
    max_file_chars : int
        Files larger than this many bytes are skipped (a few generated tables dominate otherwise).

    Returns
    -------
    StdlibCorpus
        Token ids, vocabulary (98 ids: tab, newline, printable ASCII and one "other"), and the
        provenance: files read with their character counts, Python version, stdlib path, hash.

    Raises
    ------
    TypeError, ValueError
        For counts that are not positive integers.
    FileNotFoundError
        If the standard library has no eligible source files (a zip-only install).

    Notes
    -----
    The text, and so everything trained on it, depends on the installed Python's standard
    library: it is deterministic for one Python version (same ``sha256``), not across versions.
    """
    check_count("max_chars", max_chars)
    check_count("max_file_chars", max_file_chars)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = _eligible_files(root, max_file_chars)
    if not paths:
        raise FileNotFoundError(f"no eligible .py files under the standard library at {root}")
    random.Random(seed).shuffle(paths)
    parts, files, total = [], [], 0
    for path in paths:
        if total >= max_chars:
            break
        text = path.read_text(encoding="utf-8", errors="replace") + "\n\n"
        text = text[: max_chars - total]
        parts.append(text)
        files.append((path.relative_to(root).as_posix(), len(text)))
        total += len(text)
    text = "".join(parts)
    return StdlibCorpus(
        tokens=encode(text),
        vocab=VOCAB,
        files=tuple(files),
        python_version=sys.version,
        stdlib=str(root),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )
