"""Layers that match the flow: the certify engine and the methods never import training or the stages."""

from __future__ import annotations

import subprocess
import sys


def test_methods_and_the_certify_engine_import_no_training_and_no_stage() -> None:
    code = ("import sys, rsbench.methods, rsbench.certify, rsbench.noise, rsbench.models, rsbench.data\n"
            "print(sorted(m for m in sys.modules if m.startswith(('rsbench.training', 'rsbench.stages'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
