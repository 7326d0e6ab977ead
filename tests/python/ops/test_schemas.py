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
                assert tuple(args[first:first + len(names)]) == names, (op_name, overload)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _code_without_comments(text):
    """C++ source without its // and /* */ comments (string literals kept)."""
    import re

    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*$", "", line) for line in text.splitlines())


def test_a_new_step_kind_touches_only_the_files_docs_list():
    # docs/design.md says which files a new step kind touches. Every file of
    # csrc/ and ops/ whose code names an existing kind (its StepKind value or
    # its operator's name) must be among them, the optional C++ API apart: a
    # switch over kinds added anywhere else makes the list untrue.
    import re

    design = os.path.join(REPO, "docs", "design.md")
    if not os.path.exists(design):
        import pytest

        pytest.skip("docs/design.md is not in this tree (an installed package)")
    with open(design) as f:
        section = f.read().split("<!-- step-kind-files -->")[1].split("<!-- /step-kind-files -->")[0]
    listed = set(re.findall(r"^- `([^`]+)`", section, flags=re.M))
    assert len(listed) <= 5, listed
    for path in listed:
        assert os.path.exists(os.path.join(REPO, path)), path
    optional = {"ops/ddpm_ops.h", "ops/ddpm_ops.cpp"}
    naming = set()
    for top in ("csrc", "ops"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, errors="replace") as f:
                    code = _code_without_comments(f.read())
                if re.search(r"\bk(Ddim|Ddpm|Euler|DpmSolver)\b|\"(ddim|p|euler|dpm_solver)_sample",
                             code):
                    naming.add(os.path.relpath(path, REPO))
    assert naming, "found no file naming a step kind: the search is broken"
    assert naming - optional <= listed, sorted(naming - optional - listed)
    # the tests' two files name the kinds too
    for path in ("tests/python/reference.py", "tests/python/op_registry.py"):
        assert path in listed


def test_step_overload_is_the_overload_a_call_needs():
    # the loops call overloads taken once by step_overload: each must be the
    # form its arguments ask for (noise tensor / seed, offset / generator;
    # both outputs / the sample alone into sample=)
    from torch_ddpm import step_overload
    from torch_ddpm.tables import STEP_TABLES

    for kind in STEP_TABLES:
        for noise_args, source in ((None, "noise"), ((0, 4), "seed"), ((None,), "generator")):
            for sample_out in (False, True):
                op = step_overload(kind, noise_args, sample_out)
                schema = op._schema
                names = [a.name for a in schema.arguments]
                assert source in names and not {"noise", "seed", "generator"} - {source} & set(names)
                outputs = [a.name for a in schema.arguments if a.kwarg_only]
                assert outputs == (["sample"] if sample_out else []), (op, outputs)
                assert schema.name == "ddpm::" + kind + ("" if source == "noise" else "_philox")
