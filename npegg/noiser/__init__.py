"""Noisers: how parameters are perturbed and updated (see ``base_noiser`` for the interface).

EggRoll (low rank), OpenES (full rank) and QEggRoll (int8) are the ones npegg trains with;
AltEggRoll (update from the factors' signs), EggRollBS (baseline subtraction) and Sparse (k
random entries per member) mirror the reference's other noisers.
"""
from .alt_eggroll import AltEggRoll
from .base_noiser import Noiser
from .eggroll import EggRoll
from .eggroll_baseline_subtraction import EggRollBS
from .open_es import OpenES
from .qeggroll import QEggRoll
from .sparse import Sparse

__all__ = ["Noiser", "EggRoll", "OpenES", "QEggRoll", "AltEggRoll", "EggRollBS", "Sparse"]
