"""Export a hard logic-gate network as simplified, self-contained C, and run it.

:func:`simplify_logic_network` turns the argmax network into a netlist of real
two-input gates:

* every gate's truth table is specialised to its actual inputs: constant inputs
  are folded (constants propagate), a gate reading the same signal twice becomes a
  function of one signal, and negations of its inputs are absorbed into its table;
* gates that compute a constant, a wire (``A``, ``B``) or a NOT become references
  to an existing signal, possibly negated, and cost nothing;
* the remaining gates are normalised to ``AND``, ``A AND NOT B``, ``XOR`` or ``OR``
  (an output negation is carried by the reference), identical gates are merged,
  and gates not reachable from the GroupSum outputs are removed.

:func:`export_c` writes the netlist as C (GCC/Clang vector extensions, 256
examples per step, straight-line code, memory slots reused by liveness) with the
entry point ``int ld_forward(const uint64_t *in, int64_t n_words, int32_t *counts)``
on the bit-packed layout of :func:`~lightning_discrete.nn.logic_packed.pack_bits`;
:func:`compile_c` compiles it with the system C compiler into a shared library and
loads it with :mod:`ctypes` (:class:`CompiledLogicNetwork`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .logic import GroupSum, LogicGateLayer
from .logic_packed import PackedLogicNetwork, pack_bits

__all__ = [
    "LogicNetlist",
    "simplify_logic_network",
    "export_c",
    "CExportReport",
    "compile_c",
    "CompiledLogicNetwork",
    "CCompilerNotFoundError",
    "find_c_compiler",
]

# real gate ops after normalisation (f00 == 0 and both inputs matter)
_AND, _ANDN, _XOR, _OR = "and", "andn", "xor", "or"
_C_OPS = {_AND: "{a} & {b}", _ANDN: "{a} & ~{b}", _XOR: "{a} ^ {b}", _OR: "{a} | {b}"}


class CCompilerNotFoundError(RuntimeError):
    """No C compiler (``$CC``, ``cc``, ``gcc`` or ``clang``) was found."""


@dataclass
class LogicNetlist:
    """A simplified hard logic-gate network.

    Signals are literals ``2 * node + negated``; node 0 is the constant 0 (so
    literal 0 is FALSE and 1 is TRUE), nodes ``1..in_features`` are the inputs and
    node ``in_features + 1 + i`` is ``gates[i]``.

    Attributes:
        in_features: inputs.
        gates: ``(op, lit_a, lit_b)`` with ``op`` in ``and, andn, xor, or`` (topological order).
        outputs: one literal per neuron of the last layer.
        num_classes, tau: the GroupSum readout.
        stats: counts of the original gates by what became of them.
    """

    in_features: int
    gates: List[Tuple[str, int, int]]
    outputs: List[int]
    num_classes: int
    tau: float
    stats: Dict[str, int] = field(default_factory=dict)

    @property
    def num_gates(self) -> int:
        return len(self.gates)


def _tt(gate_id: int) -> Tuple[int, int, int, int]:
    """(f00, f01, f10, f11) of a gate id (index 2a + b)."""
    return tuple((gate_id >> (3 - i)) & 1 for i in range(4))  # type: ignore[return-value]


def _specs(layers: Union[PackedLogicNetwork, Sequence[LogicGateLayer]]):
    if isinstance(layers, PackedLogicNetwork):
        return layers.in_features, [(a.tolist(), b.tolist(), g.tolist()) for a, b, g in layers.layer_specs()]
    layers = list(layers)
    return layers[0].in_features, [
        (l.idx_a.tolist(), l.idx_b.tolist(), l.gate_ids().tolist()) for l in layers
    ]


def simplify_logic_network(
    layers: Union[PackedLogicNetwork, Sequence[LogicGateLayer]],
    readout: Optional[GroupSum] = None,
    simplify: bool = True,
) -> LogicNetlist:
    """Simplify the argmax network of ``layers`` (see the module docstring).

    Args:
        layers: trained :class:`LogicGateLayer` s (or a :class:`PackedLogicNetwork`).
        readout: the GroupSum (not needed for a packed network).
        simplify: ``False`` skips merging duplicates and dead-gate removal (for
            comparison); constants, wires and NOTs are always folded.

    Returns:
        The :class:`LogicNetlist`.
    """
    if isinstance(layers, PackedLogicNetwork):
        num_classes, tau = layers.num_classes, layers.tau
    else:
        if readout is None:
            raise ValueError("`readout` (the GroupSum) is required with a list of layers")
        num_classes, tau = readout.num_classes, readout.tau
    in_features, specs = _specs(layers)
    gates: List[Tuple[str, int, int]] = []
    cse: Dict[Tuple[str, int, int], int] = {}
    stats = dict(total=0, constant=0, wire=0, merged=0, dead=0)
    lits = [2 * (i + 1) for i in range(in_features)]
    base = in_features + 1

    def one_var(node: int, h0: int, h1: int) -> int:
        if h0 == h1:
            stats["constant"] += 1
            return h0
        stats["wire"] += 1
        return 2 * node + h0  # h0 = 1, h1 = 0: NOT

    def new_gate(op: str, a: int, b: int) -> int:
        if op in (_AND, _XOR, _OR) and a > b:
            a, b = b, a
        key = (op, a, b)
        if simplify and key in cse:
            stats["merged"] += 1
            return cse[key]
        gates.append(key)
        node = base + len(gates) - 1
        cse[key] = node
        return node

    for ia, ib, ids in specs:
        new_lits = []
        for ja, jb, g in zip(ia, ib, ids):
            stats["total"] += 1
            la, lb = lits[ja], lits[jb]
            f = _tt(g)
            if la & 1:  # absorb NOT a: f'(a, b) = f(1 - a, b)
                f = (f[2], f[3], f[0], f[1])
            if lb & 1:
                f = (f[1], f[0], f[3], f[2])
            x, y = la >> 1, lb >> 1
            f00, f01, f10, f11 = f
            if x == 0 and y == 0:
                new_lits.append(one_var(0, f00, f00))
                continue
            if x == 0:
                new_lits.append(one_var(y, f00, f01))
                continue
            if y == 0:
                new_lits.append(one_var(x, f00, f10))
                continue
            if x == y:
                new_lits.append(one_var(x, f00, f11))
                continue
            if f00 == f01 and f10 == f11:  # independent of b
                new_lits.append(one_var(x, f00, f10))
                continue
            if f00 == f10 and f01 == f11:  # independent of a
                new_lits.append(one_var(y, f00, f01))
                continue
            neg = f00
            if neg:
                f00, f01, f10, f11 = 1 - f00, 1 - f01, 1 - f10, 1 - f11
            pattern = (f01, f10, f11)
            xl, yl = 2 * x, 2 * y
            if pattern == (0, 0, 1):
                node = new_gate(_AND, xl, yl)
            elif pattern == (0, 1, 0):
                node = new_gate(_ANDN, xl, yl)
            elif pattern == (1, 0, 0):
                node = new_gate(_ANDN, yl, xl)
            elif pattern == (1, 1, 0):
                node = new_gate(_XOR, xl, yl)
            elif pattern == (1, 1, 1):
                node = new_gate(_OR, xl, yl)
            else:  # pragma: no cover - all 2-input functions with f00 = 0 are listed
                raise AssertionError(f"unexpected truth table {f}")
            new_lits.append(2 * node + neg)
        lits = new_lits
    outputs = lits
    if len(outputs) % num_classes:
        raise ValueError(
            f"GroupSum needs the number of neurons ({len(outputs)}) to be divisible by `num_classes` ({num_classes})"
        )
    # dead-gate elimination from the outputs
    live = [not simplify] * len(gates)
    for lit in outputs:
        if (lit >> 1) >= base:
            live[(lit >> 1) - base] = True
    for i in range(len(gates) - 1, -1, -1):
        if live[i]:
            _, a, b = gates[i]
            for lit in (a, b):
                if (lit >> 1) >= base:
                    live[(lit >> 1) - base] = True
    remap = {}
    kept: List[Tuple[str, int, int]] = []

    def rl(lit: int) -> int:
        node = lit >> 1
        return lit if node < base else 2 * remap[node] + (lit & 1)

    for i, (op, a, b) in enumerate(gates):
        if live[i]:
            remap[base + i] = base + len(kept)
            kept.append((op, rl(a), rl(b)))
    stats["dead"] = len(gates) - len(kept)
    stats["kept"] = len(kept)
    stats["removed"] = stats["total"] - len(kept)
    return LogicNetlist(in_features, kept, [rl(l) for l in outputs], num_classes, tau, stats)


# --------------------------------------------------------------------------- #
# C code generation
# --------------------------------------------------------------------------- #


@dataclass
class CExportReport:
    """What :func:`export_c` wrote.

    Attributes:
        path: the C file.
        num_neurons: gates of the original network.
        num_gates: real gates in the C code.
        num_removed: ``num_neurons - num_gates``.
        stats: detail (``constant``, ``wire``, ``merged``, ``dead``: neurons that became a
            constant, a wire or NOT, a duplicate, or unreachable).
        in_features, num_classes, tau: the interface.
    """

    path: str
    num_neurons: int
    num_gates: int
    num_removed: int
    stats: Dict[str, int]
    in_features: int
    num_classes: int
    tau: float


_VEC_WORDS = 4  # 4 x 64 = 256 examples per step
_CHUNK = 2000  # statements per C function (keeps compile time linear)


def _c_source(net: LogicNetlist) -> Tuple[str, int]:
    base = net.in_features + 1
    n_out = len(net.outputs)
    group = n_out // net.num_classes
    # last use of every node (gates and inputs); outputs live to the end
    last: Dict[int, int] = {}
    end = len(net.gates)
    for i, (_, a, b) in enumerate(net.gates):
        last[a >> 1] = i
        last[b >> 1] = i
    for lit in net.outputs:
        last[lit >> 1] = end
    slot: Dict[int, int] = {0: 0}  # slot 0 holds zeros (the constant node)
    free: List[int] = []
    n_slots = 1

    def alloc() -> int:
        nonlocal n_slots
        if free:
            return free.pop()
        n_slots += 1
        return n_slots - 1

    used_inputs = sorted(n for n in last if 1 <= n < base)
    for n in used_inputs:
        slot[n] = alloc()
    stmts = []
    for i, (op, a, b) in enumerate(net.gates):
        na, nb = a >> 1, b >> 1
        ea, eb = f"v[{slot[na]}]", f"v[{slot[nb]}]"
        for n in {na, nb}:
            if n != 0 and last.get(n) == i:
                free.append(slot[n])
        s = alloc()
        slot[base + i] = s
        stmts.append(f"  v[{s}] = " + _C_OPS[op].format(a=ea, b=eb) + ";")
    out_slot = [slot[l >> 1] for l in net.outputs]
    out_neg = [l & 1 for l in net.outputs]
    depth = max(1, group.bit_length())

    parts = []
    for k in range(0, len(stmts), _CHUNK):
        body = "\n".join(stmts[k : k + _CHUNK])
        parts.append(
            f"static __attribute__((noinline)) void ld_part{k // _CHUNK}(ld_vec *restrict v) {{\n{body}\n}}\n"
        )
    calls = "\n".join(f"    ld_part{j}(v);" for j in range(len(parts)))

    def arr(name: str, ctype: str, vals: List[int]) -> str:
        if not vals:
            vals = [0]
        rows = [", ".join(map(str, vals[i : i + 24])) for i in range(0, len(vals), 24)]
        return f"static const {ctype} {name}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"

    src = f"""/* Hard logic-gate network generated by lightning_discrete.nn.logic_c.
 * {net.stats.get('total', 0)} neurons -> {len(net.gates)} gates; inputs {net.in_features}, classes {net.num_classes}.
 * int ld_forward(const uint64_t *in, int64_t n_words, int32_t *counts):
 *   in: (LD_IN, n_words) words, bit j of in[i * n_words + w] = feature i of example 64 w + j;
 *   counts: (64 * n_words, LD_CLASSES) number of ones in each class group (score = count / tau).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LD_IN {net.in_features}
#define LD_CLASSES {net.num_classes}
#define LD_GROUP {group}
#define LD_DEPTH {depth}
#define LD_SLOTS {n_slots}
#define LD_V {_VEC_WORDS}
#define LD_NUSED {len(used_inputs)}

typedef uint64_t ld_vec __attribute__((vector_size(8 * LD_V)));

{arr("ld_in_idx", "int32_t", [n - 1 for n in used_inputs])}
{arr("ld_in_slot", "int32_t", [slot[n] for n in used_inputs])}
{arr("ld_out_slot", "int32_t", out_slot)}
{arr("ld_out_neg", "uint8_t", out_neg)}
{"".join(parts)}
/* bit-sliced count of the ones among g vectors: online adder tree */
static void ld_count(const ld_vec *o, int g, ld_vec *planes) {{
  ld_vec st[32][LD_DEPTH];
  int stn[32], stw[32], sp = 0;
  const ld_vec zero = {{0}};
  for (int i = 0; i < g; i++) {{
    st[sp][0] = o[i]; stn[sp] = 1; stw[sp] = 1; sp++;
    while (sp >= 2 && (stn[sp - 1] == stn[sp - 2] || i == g - 1)) {{
      ld_vec *x = st[sp - 2], *y = st[sp - 1];
      int wx = stw[sp - 2], wy = stw[sp - 1], w = wx > wy ? wx : wy;
      ld_vec carry = zero;
      for (int j = 0; j < w; j++) {{
        ld_vec a = j < wx ? x[j] : zero, b = j < wy ? y[j] : zero, s = a ^ b;
        x[j] = s ^ carry;
        carry = (a & b) | (s & carry);
      }}
      if (w < LD_DEPTH) {{ x[w] = carry; w++; }}
      stw[sp - 2] = w; stn[sp - 2] += stn[sp - 1]; sp--;
    }}
  }}
  for (int j = 0; j < LD_DEPTH; j++) planes[j] = j < stw[0] ? st[0][j] : zero;
}}

int ld_info(int32_t *info) {{
  info[0] = LD_IN; info[1] = LD_CLASSES; info[2] = LD_GROUP; info[3] = {len(net.gates)};
  return 0;
}}

int ld_forward(const uint64_t *in, int64_t n_words, int32_t *counts) {{
  ld_vec *v = (ld_vec *)aligned_alloc(sizeof(ld_vec), sizeof(ld_vec) * (LD_SLOTS + LD_GROUP));
  if (!v) return -1;
  ld_vec *o = v + LD_SLOTS;
  ld_vec planes[LD_DEPTH];
  memset(v, 0, sizeof(ld_vec) * LD_SLOTS);
  for (int64_t w = 0; w < n_words; w += LD_V) {{
    int64_t nv = n_words - w < LD_V ? n_words - w : LD_V;
    for (int i = 0; i < LD_NUSED; i++) {{
      ld_vec t = {{0}};
      memcpy(&t, in + (int64_t)ld_in_idx[i] * n_words + w, 8 * (size_t)nv);
      v[ld_in_slot[i]] = t;
    }}
{calls}
    for (int k = 0; k < LD_CLASSES; k++) {{
      for (int i = 0; i < LD_GROUP; i++) {{
        int q = k * LD_GROUP + i;
        o[i] = v[ld_out_slot[q]] ^ (uint64_t)(0 - (uint64_t)ld_out_neg[q]);
      }}
      ld_count(o, LD_GROUP, planes);
      for (int64_t lane = 0; lane < nv; lane++) {{
        int32_t *c = counts + ((w + lane) * 64) * LD_CLASSES + k;
        int32_t acc[64] = {{0}};
        for (int j = 0; j < LD_DEPTH; j++) {{
          uint64_t p = planes[j][lane];
          for (int s = 0; s < 64; s++) acc[s] += (int32_t)((p >> s) & 1u) << j;
        }}
        for (int s = 0; s < 64; s++) c[s * LD_CLASSES] = acc[s];
      }}
    }}
  }}
  free(v);
  return 0;
}}
"""
    return src, n_slots


def export_c(
    layers: Union[PackedLogicNetwork, Sequence[LogicGateLayer]],
    readout: Optional[GroupSum],
    path: Union[str, os.PathLike],
    simplify: bool = True,
) -> CExportReport:
    """Write the hard network as a self-contained C file.

    Args:
        layers: the :class:`LogicGateLayer` s (or a :class:`PackedLogicNetwork`).
        readout: the :class:`GroupSum` (``None`` for a packed network).
        path: the ``.c`` file to write.
        simplify: fold constants, merge duplicates and drop dead gates (default).

    Returns:
        A :class:`CExportReport` (``num_removed`` gates removed by simplification).
    """
    net = simplify_logic_network(layers, readout, simplify=simplify)
    src, _ = _c_source(net)
    path = os.fspath(path)
    with open(path, "w") as fh:
        fh.write(src)
    return CExportReport(
        path=path,
        num_neurons=net.stats["total"],
        num_gates=net.num_gates,
        num_removed=net.stats["removed"],
        stats=dict(net.stats),
        in_features=net.in_features,
        num_classes=net.num_classes,
        tau=net.tau,
    )


# --------------------------------------------------------------------------- #
# compile and load
# --------------------------------------------------------------------------- #


def find_c_compiler() -> Optional[str]:
    """The C compiler to use: ``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on ``PATH``."""
    env = os.environ.get("CC")
    if env:
        return shutil.which(env) or (env if os.path.exists(env) else None)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CompiledLogicNetwork:
    """A compiled C logic-gate network loaded with :mod:`ctypes`.

    Call it like the float network on ``(B, in_features)`` Boolean examples to get
    the ``(B, num_classes)`` float scores, or use :meth:`forward_words` on packed words.
    """

    def __init__(self, library: str, tau: float, workdir: Optional[tempfile.TemporaryDirectory] = None):
        self._workdir = workdir  # keeps a temporary build directory alive
        self.library = library
        self._lib = ctypes.CDLL(library)
        self._lib.ld_forward.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        self._lib.ld_forward.restype = ctypes.c_int
        info = (ctypes.c_int32 * 4)()
        self._lib.ld_info(info)
        self.in_features, self.num_classes, self.group_size, self.num_gates = list(info)
        self.tau = float(tau)

    def forward_words(self, words: Tensor, batch_size: Optional[int] = None) -> Tensor:
        """``(in_features, W)`` int64 words -> ``(batch_size, num_classes)`` int64 counts."""
        if words.dim() != 2 or words.shape[0] != self.in_features:
            raise ValueError(f"expected packed words of shape ({self.in_features}, W), got {tuple(words.shape)}")
        words = words.detach().to("cpu", torch.int64).contiguous()
        nw = words.shape[1]
        counts = torch.empty(nw * 64, self.num_classes, dtype=torch.int32)
        if nw:
            rc = self._lib.ld_forward(words.data_ptr(), nw, counts.data_ptr())
            if rc != 0:
                raise MemoryError("ld_forward could not allocate its work buffer")
        if batch_size is None:
            batch_size = nw * 64
        return counts[:batch_size].to(torch.int64)

    def __call__(self, x: Tensor) -> Tensor:
        """``(B, in_features)`` Boolean examples -> ``(B, num_classes)`` float scores ``counts / tau``."""
        counts = self.forward_words(pack_bits(x.cpu()), x.shape[0])
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return (counts.to(dtype) / self.tau).to(x.device)


def compile_c(
    source: Union[str, os.PathLike, CExportReport],
    tau: Optional[float] = None,
    output: Optional[Union[str, os.PathLike]] = None,
    compiler: Optional[str] = None,
    flags: Sequence[str] = ("-O3", "-march=native"),
) -> CompiledLogicNetwork:
    """Compile an exported C file into a shared library and load it.

    Args:
        source: the ``.c`` path or the :class:`CExportReport` of :func:`export_c`.
        tau: the GroupSum divisor (taken from the report when given one; default 1).
        output: the ``.so`` to write (default: a temporary directory).
        compiler: the C compiler (default: :func:`find_c_compiler`).
        flags: optimisation flags; ``-march=native`` is dropped if the compiler rejects it.

    Raises:
        CCompilerNotFoundError: no C compiler is available.
        RuntimeError: compilation failed (the compiler's message is included).
    """
    if isinstance(source, CExportReport):
        tau = source.tau if tau is None else tau
        source = source.path
    source = os.fspath(source)
    cc = compiler or find_c_compiler()
    if cc is None:
        raise CCompilerNotFoundError(
            "no C compiler found: install gcc or clang (or set $CC) to compile exported logic networks"
        )
    workdir = None
    if output is None:
        workdir = tempfile.TemporaryDirectory(prefix="ld_logic_")
        output = os.path.join(workdir.name, "logic_net.so")
    output = os.fspath(output)
    base = [cc, "-shared", "-fPIC", "-std=gnu11", source, "-o", output]
    attempts = [list(flags)]
    if "-march=native" in flags:
        attempts.append([f for f in flags if f != "-march=native"])
    err = ""
    for fl in attempts:
        proc = subprocess.run(base[:1] + fl + base[1:], capture_output=True, text=True)
        if proc.returncode == 0:
            return CompiledLogicNetwork(output, 1.0 if tau is None else tau, workdir)
        err = proc.stderr
    raise RuntimeError(f"compiling {source} with {cc} failed:\n{err[-4000:]}")
