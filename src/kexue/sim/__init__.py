"""kexue.sim: stochastic simulation (Gillespie SSA, https://kexue.fm/archives/5607)."""
from kexue.sim.gillespie import EnsembleResult, Reaction, ReactionSystem, Trajectory, simulate_ensemble

__all__ = ["Reaction", "ReactionSystem", "Trajectory", "EnsembleResult", "simulate_ensemble"]
