"""Ctrl-C in the command line (srnvtk.interrupts, srnvtk.__main__.run): deferred while extension modules import,
recognised when a library wrapped it, and an interrupted command exits with status 130 rather than by a signal.
benchmarks/interrupt_compress.py interrupts `srnvtk compress` at random moments; these are the deterministic parts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from srnvtk.__main__ import interrupted_by
from srnvtk.interrupts import COMMAND_MODULES, deferred_interrupts, preload

REPO = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def test_an_interrupt_is_raised_after_the_block() -> None:
    before = signal.getsignal(signal.SIGINT)
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached = True
    assert reached and signal.getsignal(signal.SIGINT) is before


def test_no_interrupt_no_exception() -> None:
    before = signal.getsignal(signal.SIGINT)
    with deferred_interrupts():
        pass
    assert signal.getsignal(signal.SIGINT) is before


def test_other_threads_leave_the_handler_alone() -> None:
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def body() -> None:
        with deferred_interrupts():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_preload_imports_and_skips_what_is_missing() -> None:
    sys.modules.pop("colorsys", None)
    preload(["colorsys", "srnvtk_no_such_module"])
    assert "colorsys" in sys.modules


def test_every_command_has_its_modules() -> None:
    from srnvtk.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert set(commands) == set(COMMAND_MODULES)


def test_a_wrapped_interrupt_is_recognised() -> None:
    class Breaks:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    with pytest.raises(BaseException) as info:  # Python 3.11 wraps it in a RuntimeError, 3.12+ does not
        type("Made", (), {"field": Breaks()})
    assert interrupted_by(info.value)
    assert not interrupted_by(RuntimeError("out of memory"))
    try:
        try:
            raise ValueError("first")
        except ValueError as first:
            raise RuntimeError("second") from first
    except RuntimeError as second:
        assert not interrupted_by(second)


def test_an_interrupt_handled_inside_exec_still_exits_130(tmp_path) -> None:
    """CPython marks a KeyboardInterrupt raised inside exec() of a string as unhandled and kills itself with
    SIGINT at exit, even when it was handled (as dataclasses' exec() while torch imports lazily can cause): the
    command ends with status 130 all the same. (Run with -m, as `python -m srnvtk` is: a script's SystemExit
    exits before that check; without srnvtk.__main__.run this module ends by SIGINT, status -2.)"""
    script = tmp_path / "interrupted_cli.py"
    script.write_text(textwrap.dedent("""
        import sys
        import srnvtk.cli
        import srnvtk.__main__

        def main(argv=None):
            try:
                exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor i in range(10**7): pass")
            except KeyboardInterrupt:
                print("srnvtk: interrupted", file=sys.stderr)
                return 130
            return 0

        srnvtk.cli.main = main
        sys.exit(srnvtk.__main__.run())
    """))
    result = subprocess.run([sys.executable, "-m", "interrupted_cli"], capture_output=True, text=True, timeout=120,
                            env=dict(env(), PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}"))
    assert result.returncode == 130, (result.returncode, result.stderr[-2000:])
    assert result.stderr.strip().splitlines()[-1] == "srnvtk: interrupted"


def test_interrupted_compress_exits_130_and_leaves_nothing(tmp_path, tiny_vti) -> None:
    """Ctrl-C once the command has started its work: status 130, one line, no output or temporary file."""
    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "srnvtk", "compress", str(tiny_vti), str(folder / "x.srn"), "--steps", "100000",
         "--batch-size", "256", "--grid-resolution", "8", "--grid-channels", "4", "--mlp-width", "8",
         "--device", "cpu"],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = proc.stderr.readline()  # "compressing ...": the modules are loaded, training starts
    assert first.startswith("compressing"), first
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert err.strip().splitlines()[-1] == "srnvtk: interrupted"
    assert list(folder.iterdir()) == []
