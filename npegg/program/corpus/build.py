"""Rebuild the shipped default corpus from a CPython 3.11.7 interpreter's own standard library.

    python npegg/program/corpus/build.py          # run with CPython 3.11.7; rewrites this folder's
                                                  # cpython-3.11.7-lib.xz and FILES.txt

This is how ``cpython-3.11.7-lib.xz`` was made, kept so anyone can check it: the documents are the
ones ``npegg.program.data.stdlib_documents`` picks (sorted ``.py`` paths, test folders skipped, the
longest prefix within 3,000,000 bytes), joined into the stream ``[0] doc₀ [0] doc₁ …`` and
compressed with the standard library's lzma (xz, preset 9 | extreme). npegg itself never runs this
file: it reads the .xz and checks the decoded stream's sha256 (``data.DEFAULT_CORPUS_SHA256``).
"""
from __future__ import annotations

import hashlib
import lzma
import sys

from npegg.program.data import DEFAULT_CORPUS, DEFAULT_CORPUS_VERSION, encode_documents, stdlib_documents


def main() -> int:
    version = sys.version.split()[0]
    if sys.implementation.name != "cpython" or version != DEFAULT_CORPUS_VERSION:
        print(f"needs CPython {DEFAULT_CORPUS_VERSION} (this is {sys.implementation.name} {version}): "
              f"another version's standard library is other bytes", file=sys.stderr)
        return 2
    docs, root, skipped = stdlib_documents()
    stream = encode_documents([raw for _, raw in docs]).tobytes()
    DEFAULT_CORPUS.write_bytes(lzma.compress(stream, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))
    lines = [f"{len(raw)}\t{rel}" for rel, raw in docs]
    (DEFAULT_CORPUS.parent / "FILES.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(docs)} documents, {len(stream):,} bytes ({skipped} skipped), "
          f"sha256 {hashlib.sha256(stream).hexdigest()}, {DEFAULT_CORPUS.stat().st_size:,} bytes compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
