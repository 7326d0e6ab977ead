"""The repository speaks of the library: no file carries a folder of the machine
it was written or run on, or narrates how the work was done (numbered work
steps, who worked when). Results name their date and what they measure
instead."""
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".pytest_cache", "ddpm_demo_out", ".eggs"}
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home)/[\w.-]")
NARRATION = re.compile(r"\b(?:[Ss]top[ -]\d+|[Ss]essions?\b|issue[ -]\d+)")


def _files():
    """The repository's files: tracked or about to be (git), else every file
    outside hidden and build folders."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout
        paths = [p for p in listed.splitlines() if os.path.exists(os.path.join(REPO, p))]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for folder, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                       and not d.endswith(".egg-info")]
            paths += [os.path.relpath(os.path.join(folder, n), REPO) for n in files]
    me = os.path.relpath(os.path.abspath(__file__), REPO)
    return [p for p in paths if p != me and not p.endswith((".png", ".so", ".pyc", ".whl"))]


def _offending(pattern):
    found = []
    for rel in _files():
        try:
            with open(os.path.join(REPO, rel), encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.append(f"{rel}:{number}: {line.strip()[:120]}")
    return found


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "benchmarks")),
                    reason="not a source tree (an installed package)")
@pytest.mark.parametrize("what,pattern", [("a machine's folder", MACHINE_PATH),
                                          ("narration of the work", NARRATION)])
def test_no_file_carries(what, pattern):
    found = _offending(pattern)
    assert not found, f"{what} in:\n" + "\n".join(found[:20])
