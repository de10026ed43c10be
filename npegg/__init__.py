"""npegg: EGGROLL evolution strategies in plain, vectorized NumPy."""
__version__ = "0.1.0"
