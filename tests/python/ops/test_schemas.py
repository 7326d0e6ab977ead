"""The operators' schemas are the published ones: tests/python/published_schemas.txt
is the output of `python3 -m torch_ddpm schemas` (every schema as
registered, from ops/operators.cpp), compared here line for line. A change
to a schema must be deliberate: callers by position, keyword and default
(TorchScript included) depend on them. To publish a change, regenerate the
file with that command and review its diff."""
import os

import torch

import torch_ddpm  # noqa: F401
from torch_ddpm.__main__ import registered_schemas

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "published_schemas.txt")


def test_every_schema_is_the_published_one():
    with open(GOLDEN) as f:
        published = [line.rstrip("\n") for line in f if line.strip()]
    # (parsed and printed again: torch 1.13 prints some defaults differently)
    normalize = lambda text: str(torch._C.parse_schema(text))  # noqa: E731
    assert [normalize(s) for s in registered_schemas()] == [normalize(s) for s in published], (
        "the registered schemas differ from tests/python/published_schemas.txt; if the change is "
        "meant, run: python3 -m torch_ddpm schemas > tests/python/published_schemas.txt")


def test_the_command_prints_them(capsys):
    from torch_ddpm.__main__ import main

    assert main(["schemas"]) == 0
    assert capsys.readouterr().out.splitlines() == registered_schemas()


def test_the_adapters_table_order_is_each_step_operators():
    # torch_ddpm.tables.STEP_TABLES hands the adapters' tables to the step
    # operators by position: it must be the schema's order, for every overload
    from torch_ddpm.tables import STEP_TABLES

    for kind, names in STEP_TABLES.items():
        for op_name in (kind, kind + "_philox", kind + "_backward"):
            packet = getattr(torch.ops.ddpm, op_name)
            for overload in packet.overloads():
                args = [a.name for a in getattr(packet, overload)._schema.arguments]
                first = args.index(names[0])
                assert tuple(args[first:first + 6]) == names, (op_name, overload)
