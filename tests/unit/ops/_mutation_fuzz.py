"""Mutated models for :mod:`test_ops_onnx_mutations`, run as ``python -m`` in a child process
whose address space is capped (a mutation that slipped past the size bounds fails there with a
MemoryError, which this reports, instead of taking the test machine's memory).

Each mutation is one of: a truncated file, an input dim set to -1, 0, 2**31 or 10**12, an
attribute int set to -5, -1, 0 or 10**10 (float: NaN, -1, 1e30), an input renamed to a value
that does not exist, an initializer's leading dim grown by one, an unknown attribute added,
the output renamed. Prints one line per mutated model that failed with anything but a
WalleError (refused or run), and exits 1 if there was any.
"""

from __future__ import annotations

import random
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from walle.errors import WalleError
from walle.ops import Model


def _mutate(proto: onnx.ModelProto, rng: random.Random) -> bytes:
    graph = proto.graph
    kind = rng.randrange(7)
    if kind == 0:
        data = proto.SerializeToString()
        return data[: rng.randrange(len(data))]
    if kind == 1 and graph.input:
        dims = graph.input[0].type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = rng.choice([-1, 0, 2**31, 10**12])
    elif kind == 2 and graph.node:
        node = graph.node[rng.randrange(len(graph.node))]
        if node.attribute:
            attr = node.attribute[rng.randrange(len(node.attribute))]
            if attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.choice([-5, -1, 0, 10**10])
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([-5, -1, 0, 10**10])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([float("nan"), -1.0, 1e30])
    elif kind == 3 and graph.node and graph.node[0].input:
        node = graph.node[rng.randrange(len(graph.node))]
        if node.input:
            node.input[rng.randrange(len(node.input))] = "no_such_value"
    elif kind == 4 and graph.initializer:
        init = graph.initializer[rng.randrange(len(graph.initializer))]
        if init.dims:
            init.dims[0] += 1
    elif kind == 5 and graph.node:
        graph.node[rng.randrange(len(graph.node))].attribute.append(
            helper.make_attribute("no_such_attribute", 3)
        )
    elif graph.output:
        graph.output[0].name = "no_such_output"
    return proto.SerializeToString()


def main(runs: list[str], count: int, seed: int) -> int:
    from tests.unit.ops._onnx_oracle import node_cases

    wanted = set(runs)
    cases = [case for case in node_cases() if case.name in wanted]
    rng = random.Random(seed)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            case = rng.choice(cases)
            proto = onnx.ModelProto()
            proto.CopyFrom(case.model)
            path = Path(tmp) / f"m{i}.onnx"
            path.write_bytes(_mutate(proto, rng))
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    Model(path, backend="numpy", use_cache=False, trials=False).run(
                        *case.data_sets[0][0]
                    )
            except WalleError:
                pass
            except Exception as exc:  # anything else is the defect this looks for
                where = traceback.extract_tb(exc.__traceback__)[-1]
                print(
                    f"{case.name} #{i}: {type(exc).__name__} at {where.filename}:"
                    f"{where.lineno}: {str(exc)[:160]}"
                )
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[3:], int(sys.argv[1]), int(sys.argv[2])))
