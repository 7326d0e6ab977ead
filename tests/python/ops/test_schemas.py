"""The operators' schemas are the published ones (tests/python/published_schemas.txt):
built from the operator table (ops/op_table.cpp), they must not drift, or
callers by position, keyword and default (TorchScript included) would break."""
import os

import torch

import torch_ddpm  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))


def published():
    with open(os.path.join(HERE, "..", "published_schemas.txt")) as f:
        return [line.strip() for line in f if line.strip()]


def test_every_schema_is_the_published_one():
    want = {}
    for text in published():
        schema = torch._C.parse_schema(text)
        key = schema.name + ("." + schema.overload_name if schema.overload_name else "")
        want[key] = str(schema)
    got = {}
    for name in torch._C._dispatch_get_all_op_names() if hasattr(
            torch._C, "_dispatch_get_all_op_names") else want:
        if not name.startswith("ddpm::"):
            continue
        op_name, _, overload = name[len("ddpm::"):].partition(".")
        packet = getattr(torch.ops.ddpm, op_name)
        got[name] = str(getattr(packet, overload or "default")._schema)
    assert got == want
