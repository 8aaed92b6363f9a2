"""Export a hard logic-gate network as self-contained C, compile it and run it.

:func:`export_c` simplifies the argmax network into a
:class:`~lightning_discrete.nn.netlist.LogicNetlist`
(:func:`~lightning_discrete.nn.netlist.simplify_logic_network`) and writes it as C
(GCC/Clang vector extensions, 256 examples per step, straight-line code, memory
slots reused by liveness) with the entry point
``int ld_forward(const uint64_t *in, int64_t n_words, int32_t *counts)`` on the
bit-packed layout of :func:`~lightning_discrete.nn.logic_packed.pack_bits`;
:func:`compile_c` compiles it with the system C compiler into a shared library and
loads it with :mod:`ctypes` (:class:`CompiledLogicNetwork`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from .logic import GroupSum, LogicGateLayer
from .logic_packed import PackedLogicNetwork, pack_bits
from .netlist import LogicNetlist, simplify_logic_network

__all__ = [
    "export_c",
    "CExportReport",
    "compile_c",
    "CompiledLogicNetwork",
    "CCompilerNotFoundError",
    "find_c_compiler",
]

# C expressions of the netlist's gate operations
_C_OPS = {"and": "{a} & {b}", "andn": "{a} & ~{b}", "xor": "{a} ^ {b}", "or": "{a} | {b}"}


class CCompilerNotFoundError(RuntimeError):
    """No C compiler (``$CC``, ``cc``, ``gcc`` or ``clang``) was found.

    Raised by :func:`compile_c` (and so by ``LogicGateNetwork.to_c()``); catch it to fall
    back to the bit-packed PyTorch path.

    Examples:
        >>> issubclass(CCompilerNotFoundError, RuntimeError)
        True
    """


# --------------------------------------------------------------------------- #
# C code generation
# --------------------------------------------------------------------------- #


@dataclass
class CExportReport:
    """What :func:`export_c` wrote (returned by it; :func:`compile_c` takes it).

    Args:
        path: the C file.
        num_neurons: gates (neurons) of the original network.
        num_gates: real gates in the C code.
        num_removed: ``num_neurons - num_gates``.
        stats: detail (``constant``, ``wire``, ``merged``, ``dead``: neurons that became a
            constant, a wire or NOT, a duplicate, or unreachable; see
            :func:`~lightning_discrete.nn.netlist.simplify_logic_network`).
        in_features: inputs per example.
        num_classes: GroupSum groups.
        tau: GroupSum divisor.

    Examples:
        >>> import os, tempfile
        >>> layers = [LogicGateLayer(6, 8, init="gaussian")]
        >>> path = os.path.join(tempfile.mkdtemp(), "net.c")
        >>> report = export_c(layers, GroupSum(2), path)
        >>> report.num_neurons, report.num_gates + report.num_removed
        (8, 8)
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


def _c_source(net: LogicNetlist) -> str:
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
    return src


def export_c(
    layers: Union[LogicNetlist, PackedLogicNetwork, Sequence[LogicGateLayer]],
    readout: Optional[GroupSum],
    path: Union[str, os.PathLike],
    simplify: bool = True,
) -> CExportReport:
    """Write the hard network as a self-contained C file.

    The C file defines ``int ld_forward(const uint64_t *in, int64_t n_words,
    int32_t *counts)``: ``in`` holds ``(in_features, n_words)`` words in the layout
    of :func:`~lightning_discrete.nn.logic_packed.pack_bits`, ``counts`` receives
    ``(64 n_words, num_classes)`` GroupSum counts (scores are ``counts / tau``).

    Args:
        layers: the :class:`LogicGateLayer` s in order, a :class:`PackedLogicNetwork`,
            or a :class:`~lightning_discrete.nn.netlist.LogicNetlist` (written as it is).
        readout: the :class:`GroupSum` after the layers (``None`` for a packed
            network or a netlist).
        path: the ``.c`` file to write.
        simplify: merge duplicates and drop dead gates (default); constants, wires
            and NOTs are always folded.

    Returns:
        A :class:`CExportReport` (``num_removed`` gates removed by simplification).

    Examples:
        >>> import os, tempfile
        >>> _ = torch.manual_seed(0)
        >>> layers = [LogicGateLayer(6, 8, init="gaussian"), LogicGateLayer(8, 8, init="gaussian")]
        >>> readout = GroupSum(2)
        >>> report = export_c(layers, readout, os.path.join(tempfile.mkdtemp(), "net.c"))
        >>> report.num_neurons, report.in_features, report.num_classes
        (16, 6, 2)
        >>> lib = compile_c(report) if find_c_compiler() else None  # needs cc, gcc or clang
        >>> x = torch.randint(0, 2, (100, 6)).float()
        >>> lib is None or torch.equal(lib(x), torch.nn.Sequential(*layers, readout).eval()(x))
        True
    """
    if isinstance(layers, LogicNetlist):
        net = layers
    else:
        net = simplify_logic_network(layers, readout, simplify=simplify)
    src = _c_source(net)
    path = os.fspath(path)
    with open(path, "w") as fh:
        fh.write(src)
    return CExportReport(
        path=path,
        num_neurons=net.stats.get("total", net.num_gates),
        num_gates=net.num_gates,
        num_removed=net.stats.get("removed", 0),
        stats=dict(net.stats),
        in_features=net.in_features,
        num_classes=net.num_classes,
        tau=net.tau,
    )


# --------------------------------------------------------------------------- #
# compile and load
# --------------------------------------------------------------------------- #


def find_c_compiler() -> Optional[str]:
    """The C compiler to use: ``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on ``PATH``.

    Returns:
        The compiler's path, or ``None`` when there is none.

    Examples:
        >>> cc = find_c_compiler()
        >>> cc is None or os.path.exists(cc)
        True
    """
    env = os.environ.get("CC")
    if env:
        return shutil.which(env) or (env if os.path.exists(env) else None)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CompiledLogicNetwork:
    """A compiled C logic-gate network loaded with :mod:`ctypes` (made by :func:`compile_c`).

    Call it like the float network on ``(B, in_features)`` Boolean examples to get
    the ``(B, num_classes)`` float scores, or use :meth:`forward_words` on packed words.
    ``in_features``, ``num_classes``, ``group_size`` and ``num_gates`` are read from
    the library.

    Args:
        library: path of the shared library built from :func:`export_c`'s C file.
        tau: the GroupSum divisor.
        workdir: a temporary directory holding ``library``, kept alive (and
            removed) with this object.

    Examples:
        >>> import os, tempfile
        >>> report = export_c([LogicGateLayer(6, 8)], GroupSum(2), os.path.join(tempfile.mkdtemp(), "n.c"))
        >>> lib = compile_c(report) if find_c_compiler() else None  # needs cc, gcc or clang
        >>> lib is None or (lib.in_features, lib.num_classes, lib.group_size) == (6, 2, 4)
        True
    """

    def __init__(
        self, library: str, tau: float, workdir: Optional[tempfile.TemporaryDirectory] = None
    ) -> None:
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
        """GroupSum counts of packed examples.

        Args:
            words: ``(in_features, W)`` int64 words (:func:`~lightning_discrete.nn.logic_packed.pack_bits`).
            batch_size: examples to return (default ``64 W``, padding included).

        Returns:
            ``(batch_size, num_classes)`` int64 counts (scores are ``counts / tau``), on the CPU.

        Raises:
            ValueError: ``words`` has another shape.
        """
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
        """Class scores of Boolean examples.

        Args:
            x: ``(B, in_features)`` Boolean examples (any device; computed on the CPU).

        Returns:
            ``(B, num_classes)`` float scores ``counts / tau`` in ``x``'s float dtype
            (the default dtype for integer ``x``), on ``x``'s device.
        """
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
        output: the ``.so`` to write (default: a temporary directory that lives as
            long as the returned object).
        compiler: the C compiler (default: :func:`find_c_compiler`).
        flags: optimisation flags; ``-march=native`` is dropped if the compiler rejects it.

    Returns:
        The loaded :class:`CompiledLogicNetwork`.

    Raises:
        CCompilerNotFoundError: no C compiler is available.
        RuntimeError: compilation failed (the compiler's message is included).

    Examples:
        >>> import os, tempfile
        >>> layers, readout = [LogicGateLayer(6, 8, init="gaussian")], GroupSum(2, tau=2.0)
        >>> report = export_c(layers, readout, os.path.join(tempfile.mkdtemp(), "net.c"))
        >>> lib = compile_c(report, flags=("-O1",)) if find_c_compiler() else None  # needs a C compiler
        >>> x = torch.randint(0, 2, (10, 6))
        >>> lib is None or torch.equal(lib(x), readout(layers[0].eval()(x.float())))
        True
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
