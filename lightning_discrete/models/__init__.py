"""LightningModules: the ``DiscreteModule`` base class, the models of the Decoupled ST paper and
the latent-variable models of the Gumbel-Softmax paper's benchmark."""

from .autoencoder import CategoricalAutoencoder
from .base import DiscreteModule, classification_step
from .binary_network import StochasticBinaryNetwork
from .latent_variable import LatentVariableModule, exact_sample
from .logic_gate_network import LogicGateNetwork
from .structured import StructuredOutputNetwork
from .vae import CategoricalVAE

__all__ = [
    "DiscreteModule",
    "classification_step",
    "StochasticBinaryNetwork",
    "CategoricalAutoencoder",
    "LogicGateNetwork",
    "LatentVariableModule",
    "exact_sample",
    "CategoricalVAE",
    "StructuredOutputNetwork",
]
