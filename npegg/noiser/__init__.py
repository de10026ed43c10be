"""Noisers: how parameters are perturbed and updated (see ``base`` for the interface)."""
from .base_noiser import Noiser
from .eggroll import EggRoll
from .open_es import OpenES
from .qeggroll import QEggRoll

__all__ = ["Noiser", "EggRoll", "OpenES", "QEggRoll"]
