"""Parameter trees: nested dicts of arrays, flattened to '/'-joined paths in sorted-key order.

The order is JAX's ``jax.tree.flatten`` order for dicts (keys sorted at every level), so
the j-th path of ``tree_items(params)`` is the leaf that receives ``split(es_key, n_leaves)[j]`` in the
reference. Leaves are anything that is not a dict (arrays, ints, key arrays, None is skipped
nowhere: a None leaf is a leaf).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator


def tree_items(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, leaf) pairs in sorted-key (JAX flatten) order."""
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from tree_items(tree[k], f"{prefix}{k}/")
    else:
        yield prefix[:-1], tree


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leafwise over trees of the same structure (structure taken from ``tree``)."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    return fn(tree, *rest)


def tree_map_with_path(fn: Callable, tree: Any, *rest: Any, prefix: str = "") -> Any:
    """Like ``tree_map`` but ``fn(path, leaf, *rest_leaves)``."""
    if isinstance(tree, dict):
        return {k: tree_map_with_path(fn, tree[k], *(r[k] for r in rest), prefix=f"{prefix}{k}/")
                for k in tree}
    return fn(prefix[:-1], tree, *rest)


def flatten(tree: Any) -> dict[str, Any]:
    """{path: leaf} in sorted order."""
    return dict(tree_items(tree))


def unflatten(flat: dict[str, Any]) -> dict:
    """Inverse of ``flatten``: {'a/b': x} → {'a': {'b': x}}."""
    out: dict = {}
    for path, leaf in flat.items():
        node = out
        *parents, last = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out

