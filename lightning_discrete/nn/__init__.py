"""``torch.nn`` modules: discrete bottlenecks, logic-gate layers and the GroupSum readout."""

from .bottleneck import BinaryBottleneck, CategoricalBottleneck, DiscreteBottleneck

__all__ = ["DiscreteBottleneck", "CategoricalBottleneck", "BinaryBottleneck"]
