"""``torch.nn`` modules: discrete bottlenecks, logic-gate layers and the GroupSum readout,
plus the bit-packed and compiled-C inference paths of logic-gate networks."""

from .bottleneck import BinaryBottleneck, BottleneckConfig, CategoricalBottleneck, DiscreteBottleneck
from .logic import GATE_COEFFICIENTS, GATE_NAMES, GroupSum, LogicGateLayer, group_sum, logic_gate
from .logic_c import (
    CCompilerNotFoundError,
    CompiledLogicNetwork,
    compile_c,
    export_c,
    simplify_logic_network,
)
from .logic_packed import PackedLogicNetwork, pack_bits, unpack_bits

__all__ = [
    "BottleneckConfig",
    "DiscreteBottleneck",
    "CategoricalBottleneck",
    "BinaryBottleneck",
    "LogicGateLayer",
    "GroupSum",
    "GATE_NAMES",
    "GATE_COEFFICIENTS",
    "logic_gate",
    "group_sum",
    "PackedLogicNetwork",
    "pack_bits",
    "unpack_bits",
    "export_c",
    "compile_c",
    "simplify_logic_network",
    "CompiledLogicNetwork",
    "CCompilerNotFoundError",
]
