"""Noisers: how parameters are perturbed and updated (see ``base`` for the interface)."""
from .base import Noiser
from .eggroll import EggRoll
from .open_es import OpenES

__all__ = ["Noiser", "EggRoll", "OpenES"]
