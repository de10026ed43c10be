"""Models: pure-function classes with ``rand_init`` and ``forward`` (the interface: ``base_model``; atoms: ``common``)."""
from .common import (EMB_PARAM, EXCLUDED, MM, MM_PARAM, MLP, PARAM, TMM, CommonInit, CommonParams,
                     Embedding, LayerNorm, Linear, Model, Parameter, call_submodule, merge_frozen,
                     merge_inits, simple_es_tree_key)
