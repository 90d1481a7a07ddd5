"""The committed generated code matches `python protos/gen.py` (CI fails on a stale file)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"


def _gen():
    sys.path.insert(0, str(PROTOS))
    try:
        import gen  # protos/gen.py
        return importlib.reload(gen)
    finally:
        sys.path.remove(str(PROTOS))


def test_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    gen = _gen()
    written = set(gen.generate(tmp_path))
    committed = set(gen.generated_files(PROTOS))
    assert written, "no .proto files found"
    missing = sorted(str(p) for p in written - committed)
    stale = sorted(str(p) for p in committed - written)
    assert not missing, f"generated files not committed (run python protos/gen.py): {missing}"
    assert not stale, f"generated files without a .proto (run python protos/gen.py): {stale}"
    differ = [str(rel) for rel in sorted(written)
              if (tmp_path / rel).read_bytes() != (PROTOS / rel).read_bytes()]
    assert not differ, f"stale generated files (run python protos/gen.py): {differ}"


def test_generated_imports_resolve():
    """Every generated module imports under the one root `dockyard.protos`."""
    gen = _gen()
    mods = [str(p.with_suffix("")).replace("/", ".") for p in gen.generated_files(PROTOS)
            if p.suffix == ".py" and p.name != "__init__.py"]
    assert mods
    code = f"import importlib\nfor m in {mods!r}: importlib.import_module('dockyard.protos.' + m)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/", timeout=60)


def test_proto_packages_follow_style():
    for proto in PROTOS.rglob("*.proto"):
        rel = proto.relative_to(PROTOS)
        text = proto.read_text()
        if rel.parts[0] == "services":
            name = rel.parts[1]
            assert rel.parts[2] == "v1" and rel.name == f"{name}.proto", rel
            assert f"package dockyard.services.{name}.v1;" in text, rel
