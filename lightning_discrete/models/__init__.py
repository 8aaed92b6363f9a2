"""LightningModules: the ``DiscreteModule`` base class and the models of the Decoupled ST paper."""

from .autoencoder import CategoricalAutoencoder
from .base import DiscreteModule
from .binary_network import StochasticBinaryNetwork
from .logic_gate_network import LogicGateNetwork

__all__ = ["DiscreteModule", "StochasticBinaryNetwork", "CategoricalAutoencoder", "LogicGateNetwork"]
