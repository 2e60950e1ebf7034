"""Stochastic simulation (Gillespie SSA, https://kexue.fm/archives/5607)."""
from .gillespie import Reaction, ReactionSystem, Trajectory, EnsembleResult, simulate_ensemble

__all__ = [
    'Reaction', 'ReactionSystem', 'Trajectory', 'EnsembleResult', 'simulate_ensemble'
]
