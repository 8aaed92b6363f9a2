"""LightningModules: the ``DiscreteModule`` base class and the models of the Decoupled ST paper."""

from .autoencoder import CategoricalAutoencoder
from .base import DiscreteModule, classification_step
from .binary_network import StochasticBinaryNetwork
from .logic_gate_network import LogicGateNetwork

__all__ = ["DiscreteModule", "classification_step", "StochasticBinaryNetwork", "CategoricalAutoencoder", "LogicGateNetwork"]
