"""``benchmarks/gpu_check.py``: the CPU dry run (``--device cpu --quick``) writes every table."""

import doctest
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_check  # noqa: E402  (benchmarks/ is not a package)
import gpu_check_helpers  # noqa: E402
import gpu_check_scan  # noqa: E402
import gpu_check_speed  # noqa: E402


def _finite(*values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_quick_cpu_run_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    argv = ["--device", "cpu", "--quick", "--out", str(tmp_path)]
    # "torch": no C++ kernel build on a fresh machine
    assert gpu_check.main(argv + ["--scan-backend", "torch"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert report["complete"] and not report["errors"]
    assert report["machine"]["torch"] and report["machine"]["date"]
    assert report["scan_backend"]["resolved"] == "torch"

    plan = gpu_check.PLANS["quick"]
    rows = report["agreement"]
    assert (
        len(rows) == len(plan["scan_shapes"]) * 2 * 3
    )  # shapes, dtypes, backends
    for row in rows:
        if row["backend"] == "triton":  # not interpreted: reported, not run
            assert row["status"] in ("skipped", "unavailable"), row
        if row["backend"] == "cuda":
            assert row["status"] == "skipped", row
        if row["backend"] == "torch" and row["oracle"] == "ref":
            assert row["status"] == "ok", row
            assert _finite(row["y_rel"], row["max_rel"], row["max_abs"])
            tol_y, tol_g = gpu_check_scan.TOLERANCES[row["dtype"]]
            assert row["y_rel"] <= tol_y and row["max_rel"] <= tol_g, row
            assert row["ok"] is True
            assert set(row["tensors"]) == {"y", "du", "ddelta", "dA", "dB"} | {
                "dC",
                "dD",
                "dz",
                "ddelta_bias",
            }
    assert any(r["oracle"] == "torch" for r in rows)

    assert len(report["layer"]) == len(plan["lengths"]) * 2 * 2 * 2
    assert len(report["models"]) == len(plan["seconds"]) * 2 * 2 * 2
    for case in report["layer"] + report["models"]:
        assert case["status"] == "ok", case
        assert _finite(case["ms"]) and case["ms"] > 0
    pairs = report["layer_pairs"] + report["model_pairs"]
    assert len(pairs) == (len(plan["lengths"]) + len(plan["seconds"])) * 4
    assert all(_finite(p["ratio"]) and p["ratio"] > 0 for p in pairs)

    for heading in ("## 1.", "## 2.", "## 3."):
        assert heading in markdown
    assert "| tiny chunks | 3x8x4x20 | float32 | torch | ref | ok |" in markdown
    assert "| dualpath | 0.25 | inference |" in markdown


def test_a_backend_that_raises_is_an_error_row(monkeypatch):
    scan = gpu_check_scan.ss.selective_scan

    def broken(*args, backend="auto", **kwargs):
        if backend == "torch":
            raise RuntimeError("kernel exploded")
        return scan(*args, backend=backend, **kwargs)

    monkeypatch.setattr(gpu_check_scan.ss, "selective_scan", broken)
    shape = ("tiny", 1, 4, 2, 5, "ref")
    rows = gpu_check_scan.agreement_rows(
        shape, "float32", gpu_check.torch.device("cpu")
    )
    row = next(r for r in rows if r["backend"] == "torch")
    assert row["status"] == "error" and "kernel exploded" in row["reason"]


def test_the_examples_of_the_helpers_run():
    """benchmarks/ is outside the doctest paths: the modules' examples are run here."""
    for module in (gpu_check_helpers, gpu_check_scan, gpu_check_speed):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
