"""``torch.nn`` modules: discrete bottlenecks, logic-gate layers and the GroupSum readout,
plus the bit-packed and compiled-C inference paths of logic-gate networks."""

from .bottleneck import BinaryBottleneck, BottleneckConfig, CategoricalBottleneck, DiscreteBottleneck
from .logic import (
    GATE_COEFFICIENTS,
    GATE_NAMES,
    NUM_GATES,
    GroupSum,
    LogicGateLayer,
    check_group_sum,
    gate_truth_table,
    group_sum,
    logic_gate,
)
from .logic_c import CCompilerNotFoundError, CompiledLogicNetwork, compile_c, export_c
from .netlist import LogicNetlist, simplify_logic_network
from .logic_packed import PackedLogicNetwork, pack_bits, unpack_bits

__all__ = [
    "BottleneckConfig",
    "DiscreteBottleneck",
    "CategoricalBottleneck",
    "BinaryBottleneck",
    "LogicGateLayer",
    "GroupSum",
    "NUM_GATES",
    "GATE_NAMES",
    "GATE_COEFFICIENTS",
    "gate_truth_table",
    "check_group_sum",
    "logic_gate",
    "group_sum",
    "PackedLogicNetwork",
    "pack_bits",
    "unpack_bits",
    "export_c",
    "compile_c",
    "LogicNetlist",
    "simplify_logic_network",
    "CompiledLogicNetwork",
    "CCompilerNotFoundError",
]
