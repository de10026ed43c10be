"""Golden-vector files checked against their machine-readable schema, ``vectors.schema.json``.

The schema (shipped beside this module, described in ``docs/vectors.md``) lists, for every kind
of vector file, every key as a template with its dtype, shape expression and meaning, so a C
or Rust port can read the files without reading Python. ``validate(path, arrays)`` checks one
file against it before anything is compared:

- the kind, from the file name (``egg_fwd_*.npz`` …); the version, from the ``format_version``
  key — a file without it is version 1 (the reference's own files predate the key; version 1
  is defined as exactly the layout they have, so nothing about them is checked less);
- every key matches a template (``param/{leaf}``, ``{case}/step{k}/grad/{leaf}``), and every
  required one is present, for every leaf, case and step the file declares;
- each array's dtype, its shape (dimensions are integers, symbols such as ``P`` or ``4*H``,
  ``@other/key[1:]`` for another array's shape, ``$other/key`` for another key's value, ``...``
  for any dimensions) and, where given, its allowed values or range (tokens below ``V``).

A symbol is either defined by a key's value (``"H": "$meta/hidden"``) or bound by the first
array that uses it alone; every later use must agree. Any failure raises ``VectorFileError``
with one line: the file, the key, what was expected and what was found.
"""
from __future__ import annotations

import ast
import fnmatch
import itertools
import json
import operator
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

SCHEMA_PATH = Path(__file__).with_name("vectors.schema.json")
VERSION_KEY = "format_version"
_GROUP = {"leaf": ".+", "path": ".+", "case": "[^/]+", "name": "[^/]+", "int": "[0-9]+"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SHAPE_REF = re.compile(r"^@(?P<key>[^\[]+)(?:\[(?P<sl>-?\d*(?::-?\d*)?)\])?$")


class VectorFileError(ValueError):
    """A vector file that does not follow its schema; the message is one line naming file and key."""


@lru_cache(maxsize=None)
def load_schema(path: str = str(SCHEMA_PATH)) -> dict:
    """The parsed schema (JSON), read once."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def kind_of(name: str, schema: dict | None = None) -> str | None:
    """The kind whose ``files`` patterns match the file name ``name``, or None."""
    schema = schema or load_schema()
    return next((k for k, spec in schema["kinds"].items()
                 if any(fnmatch.fnmatch(name, pat) for pat in spec["files"])), None)


def validate(path, arrays: dict, schema: dict | None = None) -> tuple[str, int]:
    """Check one file's arrays against the schema; returns (kind, format version).

    Raises ``VectorFileError`` (one line: file, key, expected, found) on the first violation, and
    for a file name no kind claims.
    """
    schema = schema or load_schema()
    path = Path(path)
    kind = kind_of(path.name, schema)
    if kind is None:
        pats = ", ".join(p for spec in schema["kinds"].values() for p in spec["files"])
        raise VectorFileError(f"{path}: not a vector file name this schema knows (expected one of {pats})")
    version = 1
    if VERSION_KEY in arrays:
        v = arrays[VERSION_KEY]
        if v.shape != () or v.dtype.kind not in "iu":
            raise VectorFileError(f"{path}: {VERSION_KEY}: expected an integer scalar, found {v.dtype} {v.shape}")
        version = int(v)
    if version not in schema["versions"]:
        raise VectorFileError(f"{path}: {VERSION_KEY} {version}: this reader knows versions "
                              f"{', '.join(map(str, schema['versions']))}; update npegg")
    _File(path, arrays, schema["kinds"][kind]).check()
    return kind, version


class _File:
    """One file's arrays against one kind's spec: matching, symbols, then the checks."""

    def __init__(self, path, arrays, spec):
        self.path, self.a, self.spec = path, arrays, spec
        self.types = spec.get("placeholders", {})
        self.entries = [dict(e, _re=self._compile(e["key"])) for e in spec["keys"]]
        self.entries.append({"key": VERSION_KEY, "dtype": ["int32", "int64"], "shape": [],
                             "_re": self._compile(VERSION_KEY)})
        src = spec.get("leaves")
        self.leaves = sorted(k[len(src):] for k in arrays if k.startswith(src)) if src else []
        cases = arrays.get("meta/cases")
        if "case" in self.types:
            if cases is None or cases.ndim != 1 or cases.dtype.kind != "U":
                self.fail("meta/cases", "a 1-d array of case names", "missing" if cases is None else
                          f"{cases.dtype} {cases.shape}")
        self.cases = [str(c) for c in cases] if cases is not None and cases.ndim == 1 else []
        self.bound = {}                                          # (symbol, scope) -> int

    def fail(self, key, expected, found):
        raise VectorFileError(f"{self.path}: {key}: expected {expected}, found {found}")

    # -- templates ------------------------------------------------------------------------------
    def _compile(self, template):
        parts, pos = [], 0
        for m in _PLACEHOLDER.finditer(template):
            parts.append(re.escape(template[pos:m.start()]))
            parts.append(f"(?P<{m.group(1)}>{_GROUP[self.types[m.group(1)]['type']]})")
            pos = m.end()
        return re.compile("".join(parts) + re.escape(template[pos:]) + "$")

    def match(self, key):
        """(entry, bindings) of the first template matching ``key`` whose placeholders and condition hold."""
        for e in self.entries:
            m = e["_re"].match(key)
            if not m:
                continue
            b = {}
            for name, val in m.groupdict().items():
                t = self.types[name]["type"]
                if (t == "leaf" and val not in self.leaves) or (t == "case" and val not in self.cases):
                    break
                b[name] = int(val) if t == "int" else val
            else:
                if self.when(e, b):
                    return e, b
        return None, None

    def subst(self, template, b):
        try:
            return _PLACEHOLDER.sub(lambda m: str(b[m.group(1)]), template)
        except KeyError:
            return None

    def value(self, template, b, key):
        k = self.subst(template, b)
        if k is None or k not in self.a:
            self.fail(key, f"key {k or template} (used by this key's shape or condition)", "it missing")
        v = self.a[k]
        return v.item() if v.shape == () else v

    def when(self, e, b):
        cond = e.get("when")
        return cond is None or self.value(cond["key"], b, e["key"]) in cond["in"]

    # -- symbols and shapes ---------------------------------------------------------------------
    def symbol(self, name, b, key, bind_to=None):
        if name in b:
            return b[name]
        spec = self.spec.get("symbols", {}).get(name, {})
        if "value" in spec:
            return int(self.value(spec["value"], b, key))
        scope = (name,) + tuple(b.get(p) for p in spec.get("per", []))
        if scope not in self.bound and bind_to is not None:
            self.bound[scope] = bind_to
        return self.bound.get(scope)

    def evaluate(self, expr, b, key):
        ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}

        def ev(n):
            if isinstance(n, ast.Constant) and isinstance(n.value, int):
                return n.value
            if isinstance(n, ast.Name):
                v = self.symbol(n.id, b, key)
                if v is None:
                    self.fail(key, f"a value for symbol {n.id} (schema)", "none bound")
                return v
            if isinstance(n, ast.BinOp) and type(n.op) in ops:
                return ops[type(n.op)](ev(n.left), ev(n.right))
            raise VectorFileError(f"schema: bad expression {expr!r} for {key}")
        return ev(ast.parse(str(expr), mode="eval").body)

    def expected_dims(self, e, b, key, shape):
        """The expected shape as a list of ints and at most one ``...``; binds bare symbols from ``shape``."""
        dims = []
        for d in e["shape"]:
            m = _SHAPE_REF.match(d) if isinstance(d, str) else None
            if m:
                ref = self.subst(m.group("key"), b)
                if ref not in self.a:
                    self.fail(key, f"key {ref} (its shape is part of this key's)", "it missing")
                s = list(self.a[ref].shape)
                sl = m.group("sl")
                if sl is None:
                    dims += s
                elif ":" in sl:
                    lo, hi = (int(x) if x else None for x in sl.split(":"))
                    dims += s[lo:hi]
                else:
                    dims.append(s[int(sl)])
            elif isinstance(d, str) and d.startswith("$"):
                dims.append(int(self.value(d[1:], b, key)))
            elif isinstance(d, str) and d.isidentifier() and d != "...":
                i = len(dims) if "..." not in dims else len(shape) - (len(e["shape"]) - e["shape"].index(d))
                found = shape[i] if 0 <= i < len(shape) else None
                dims.append(self.symbol(d, b, key, bind_to=found))
            elif d == "...":
                dims.append(d)
            else:
                dims.append(self.evaluate(d, b, key))
        return dims

    def check_shape(self, e, b, key, arr):
        dims = self.expected_dims(e, b, key, arr.shape)
        s = list(arr.shape)
        if "..." in dims:
            i = dims.index("...")
            head, tail = dims[:i], dims[i + 1:]
            ok = len(s) >= len(head) + len(tail) and s[:len(head)] == head and (not tail or s[-len(tail):] == tail)
        else:
            ok = s == dims
        if not ok:
            shown = ", ".join(map(str, e["shape"]))
            self.fail(key, f"shape ({shown}) = {tuple(dims)}", tuple(s))

    def check_array(self, e, b, key, arr):
        want = e.get("dtype", "any")
        want = [want] if isinstance(want, str) else want
        names = {"str": arr.dtype.kind == "U", "bool": arr.dtype == np.bool_, "any": True}
        if not any(names[w] if w in names else arr.dtype == np.dtype(w) for w in want):
            self.fail(key, f"dtype {' or '.join(want)}", arr.dtype)
        if "shape" in e:
            self.check_shape(e, b, key, arr)
        if "values" in e:
            bad = ~np.isin(arr.astype(str) if arr.dtype.kind == "U" else arr, e["values"])
            if bad.any():
                i = tuple(int(x) for x in np.argwhere(bad)[0]) if arr.ndim else ()
                self.fail(f"{key}{list(i)}", f"one of {e['values']}", repr(arr[i].item()))
        if "range" in e and arr.size:
            lo, hi = (self.evaluate(x, b, key) for x in e["range"])
            bad = (arr < lo) | (arr > hi)
            if bad.any():
                i = tuple(int(x) for x in np.argwhere(bad)[0]) if arr.ndim else ()
                self.fail(f"{key}{list(i)}", f"a value in [{lo}, {hi}] ({e['range'][0]} to {e['range'][1]})",
                          arr[i].item())

    def check(self):
        matched = []
        for key in self.a:
            e, b = self.match(key)
            if e is None:
                self.fail(key, "a key of this kind's schema", "a key the schema does not define")
            matched.append((key, e, b))
        for key, e, b in matched:                                # bind the bare symbols first ("2*K" before "K")
            if "shape" in e:
                try:
                    self.expected_dims(e, b, key, self.a[key].shape)
                except VectorFileError:
                    pass                                         # reported by the checks below
        for key, e, b in matched:
            self.check_array(e, b, key, self.a[key])
        for e in self.entries:
            if e.get("required"):
                self.check_required(e)

    def check_required(self, e):
        names = _PLACEHOLDER.findall(e["key"])
        pools = []
        for n in names:
            t = self.types[n]
            if t["type"] == "leaf":
                pools.append(self.leaves)
            elif t["type"] == "case":
                pools.append(self.cases)
            elif "count" in t:
                pools.append(None)                               # filled per binding below
            else:
                return                                           # not enumerable: nothing required
        for combo in itertools.product(*[p if p is not None else [None] for p in pools]):
            b = dict(zip(names, combo))
            for n in names:
                if b[n] is None:
                    b_rest = {k: v for k, v in b.items() if v is not None}
                    count = self.value(self.types[n]["count"], b_rest, e["key"])
                    for i in range(int(count)):
                        self._require(e, {**b_rest, n: i})
                    break
            else:
                self._require(e, b)

    def _require(self, e, b):
        key = self.subst(e["key"], b)
        if key not in self.a and self.when(e, b):
            self.fail(key, f"this key ({e.get('meaning', 'required')})", "it missing")
