"""The sdist carries everything needed to build the wheel (issue #11: it once lacked kernels/*.pyx).

Builds only the sdist (a few seconds, no compiler) with ``python -m build --sdist --no-isolation``
from a copy of the tree as a fresh checkout has it, and checks its file list with
tools/dist_contents.py, the checks tools/build_wheels.sh also runs on the wheels. The build
requirements come with the ``test`` extras. Skipped only where there is no source tree (an
installed package tested on its own); never in CI, which runs from the checkout.
"""
import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if not ((ROOT / "setup.py").is_file() and (ROOT / "kernels").is_dir()):
    pytest.skip("no source tree next to the tests", allow_module_level=True)

_spec = importlib.util.spec_from_file_location("dist_contents", ROOT / "tools" / "dist_contents.py")
dist_contents = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dist_contents)


def test_sdist_has_every_source_and_no_generated_file(tmp_path):
    tree = dist_contents.export_tree(tmp_path / "tree")  # no stale egg-info or .c in the way
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                        "--outdir", str(tmp_path / "dist"), str(tree)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"building the sdist failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    found = dist_contents.problems(sdist)
    assert not found, "\n".join(found)


def test_the_sdist_check_sees_what_it_must(tmp_path):
    """Sanity of the check itself on a hand-made sdist: one kernel source left out, a .c added."""
    required = dist_contents.sdist_required()
    kernels = [n for n in required if n.startswith("kernels/")]
    assert any(n.endswith(".pyx") for n in kernels), kernels
    dropped = kernels[0]
    fake = tmp_path / "fusedrnn-0.tar.gz"
    with tarfile.open(fake, "w:gz") as t:
        for name in [n for n in required if n != dropped] + ["kernels/generated.c"]:
            info = tarfile.TarInfo(f"fusedrnn-0/{name}")
            t.addfile(info, io.BytesIO(b""))
    assert dist_contents.problems(fake) == [f"missing from the sdist: {dropped}",
                                            "generated file in the sdist: kernels/generated.c"]
