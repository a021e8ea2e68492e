"""The dependency direction holds: core ← data ← training ← bot (and core knows no chat SDK)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "core": {"bot", "data", "training", "discord", "telegram", "argparse"},
    "data": {"bot", "training", "discord", "telegram"},
    "training": {"bot", "discord", "telegram"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):  # walks function bodies too: lazy imports count
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_wrong_way_imports(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    bad = [f"{f.relative_to(ROOT)} imports {sorted(imported_roots(f) & FORBIDDEN[package])}"
           for f in files if imported_roots(f) & FORBIDDEN[package]]
    assert not bad, "wrong-way imports:\n" + "\n".join(bad)


def test_core_has_no_print() -> None:
    offenders = []
    for f in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from bot.cli import main\n    import discord\n")
    assert {"bot", "discord"} <= imported_roots(f)


# -- optional extras: a bot-only install (`pip install -e .`) has no matplotlib ---------------

PLOTTING_HOME = "training/eval/report.py"  # the one module that may import matplotlib, lazily


def _matplotlib_imports(path: Path) -> tuple[list[int], list[int]]:
    """Line numbers of matplotlib imports at module level and inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)}
    top, inner = [], []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n.split(".")[0] == "matplotlib" for n in names):
            (inner if id(node) in lazy else top).append(node.lineno)
    return top, inner


def test_matplotlib_is_imported_only_lazily_by_the_report() -> None:
    bad = []
    for package in ("bot", "core", "data", "training"):
        for f in sorted((ROOT / package).rglob("*.py")):
            top, inner = _matplotlib_imports(f)
            rel = f.relative_to(ROOT).as_posix()
            if top or (inner and rel != PLOTTING_HOME):
                bad.append(f"{rel}: lines {top + inner}")
    assert not bad, "matplotlib (the `train` extra) imported outside the report's plots:\n" + "\n".join(bad)


def test_bot_imports_without_matplotlib() -> None:
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import bot.cli, bot.app, bot.platforms, bot.web, bot.cli.identify, core, data\n"
            "bot.cli.build_parser()\n"
            "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_eval_report_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main
    from core.errors import AniRecError, MissingExtra
    from training.eval import require_plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"pip install 'anirec\[train\]'") as err:
        require_plotting()
    assert isinstance(err.value, AniRecError)
    monkeypatch.setenv("ANIREC_HOME", str(tmp_path / "home"))
    assert main(["eval", "--queries", "4", "--report", str(tmp_path / "rep")]) == 2
    msg = capsys.readouterr().err
    assert "matplotlib" in msg and "pip install 'anirec[train]'" in msg and "Traceback" not in msg
    assert not (tmp_path / "rep").exists()  # refused before the run


def test_matplotlib_checker_tells_module_level_from_lazy(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import matplotlib.pyplot as plt\n\ndef plot():\n    from matplotlib.figure import Figure\n")
    assert _matplotlib_imports(f) == ([1], [4])
