"""The recommendation and identical-file marks, on manifests with known numbers."""

from __future__ import annotations

import os
import re

import pytest

from keras_opt.tflite import _report as report
from keras_opt.tflite._comparison import (
    comparison_rows,
    format_rows,
    recommend_comparison,
    write_comparison,
)
from keras_opt.tflite._plot import pareto_front
from keras_opt.tflite._recommend import recommend, recommendation_lines
from keras_opt.tflite._result import ExportResult


def _variant(name, size, p50, acc, **extra):
    return {
        "name": name,
        "file": f"{name}.tflite",
        "error": None,
        "size_bytes": size,
        "gzip_bytes": size // 2,
        "sha256": name,
        "latency_ms": {"mean": p50, "std": 0.0, "p50": p50, "p90": p50, "p99": p50},
        "metrics": {"accuracy": acc},
        "parity": {"max_abs_diff": 1e-6, "top1_agreement": 1.0},
        "ops": {"builtin_only": True},
        "batch_size": None,
        "same_file_as": None,
        **extra,
    }


def _manifest():
    return {
        "model": {"name": "digits", "flavor": "keras3"},
        "metric_name": "accuracy",
        "keras_metrics": {"accuracy": 0.9500},
        "benchmark": {"threads": 1, "runs": 50, "warmup": 5, "input_data": "given"},
        "batch_size": {"reason": "auto: dynamic batch"},
        "variants": [
            _variant("float32", 60_000, 0.020, 0.9500),
            _variant("float16", 31_000, 0.024, 0.9500),
            _variant("dynamic_int8", 17_000, 0.030, 0.9450, same_file_as="int8"),
            _variant("int8", 17_000, 0.030, 0.9450),
            _variant("int8_only", 16_500, 0.028, 0.9300),
            {"name": "int16x8", "file": None, "error": "Conversion failed: boom"},
        ],
        "plot": None,
    }


def test_smallest_and_fastest_within_one_point_and_why_not_the_others():
    rec = recommend(_manifest())
    assert rec["keras_metric"] == 0.95
    assert rec["threshold"] == pytest.approx(0.94)
    assert rec["meets_budget"] == ["float32", "float16", "int8"]
    assert rec["smallest"]["name"] == "int8"  # int8_only is smaller but 2 points down
    assert rec["smallest"]["size_bytes"] == 17_000
    assert rec["fastest"]["name"] == "float32"
    assert rec["why_not"] == {
        "float16": "meets the budget, but int8 is smaller (17,000 vs 31,000 bytes) and "
        "float32 is faster (0.0200 vs 0.0240 ms p50)",
        "dynamic_int8": "same file as int8 (identical sha256)",
        "int8_only": "accuracy 0.9300 is 2.0 points below the Keras model (0.9500; budget "
        "1.0 point)",
        "int16x8": "failed to convert: Conversion failed: boom",
    }
    assert rec["summary"].startswith("Ship int8 for size or float32 for speed")


def test_budget_is_configurable():
    loose = recommend(_manifest(), accuracy_budget=0.03)
    assert loose["smallest"]["name"] == "int8_only"
    assert loose["fastest"]["name"] == "float32"
    strict = recommend(_manifest(), accuracy_budget=0.0)
    assert strict["meets_budget"] == ["float32", "float16"]
    assert strict["smallest"]["name"] == "float16"
    assert "0.5 points below" in strict["why_not"]["int8"]
    with pytest.raises(ValueError, match="`accuracy_budget` must be >= 0"):
        recommend(_manifest(), accuracy_budget=-0.01)
    with pytest.raises(TypeError, match="`manifest` must be an export manifest"):
        recommend({"rows": []})


def test_no_labels_means_no_recommendation():
    manifest = _manifest()
    manifest["keras_metrics"] = {}
    rec = recommend(manifest)
    assert rec["smallest"] is None
    assert rec["fastest"] is None
    assert "pass eval_data=(x, y)" in rec["summary"]


def test_one_variant_smallest_and_fastest():
    manifest = _manifest()
    manifest["variants"] = [_variant("int8", 17_000, 0.01, 0.95)]
    rec = recommend(manifest)
    assert rec["smallest"] == rec["fastest"]
    assert rec["summary"] == (
        "Ship int8: the smallest and the fastest variant within 1.0 point of the Keras model "
        "(accuracy 0.9500 vs 0.9500)."
    )


def test_report_table_and_cli_text_open_with_the_recommendation(tmp_path):
    manifest = _manifest()
    manifest["recommendation"] = recommend(manifest)
    path = report.write_report(str(tmp_path), manifest)
    with open(path) as f:
        text = f.read()
    body = text.split("\n")
    assert body[2] == "## What to ship"
    assert body[4] == f"**{manifest['recommendation']['summary']}**"
    assert text.index("What to ship") < text.index("| variant |")
    assert "- **smallest**: int8 (17,000 bytes, p50 0.0300 ms, accuracy 0.9450)" in text
    assert "- `int8_only`: accuracy 0.9300 is 2.0 points below" in text
    assert "| dynamic_int8 | dynamic | same file as int8 |" in text
    assert "`dynamic_int8.tflite` is byte-identical to `int8.tflite`" in text

    result = ExportResult(str(tmp_path), manifest, "", path, None)
    lines = result.format_recommendation().splitlines()
    assert lines[0].startswith("Ship int8 for size or float32 for speed")
    assert lines[1].strip().startswith("smallest: int8")
    table = result.format_table().splitlines()
    twin = next(line for line in table if line.startswith("dynamic_int8"))
    assert twin.split() == ["dynamic_int8", "dynamic", "same", "file", "as", "int8"]
    assert next(line for line in table if line.startswith("int16x8")).split()[-1] == "FAILED"


def test_plot_merges_identical_files_and_draws_the_front(tmp_path):
    points = report.plot_points(report.table_rows(_manifest()))
    assert [p["label"] for p in points] == [
        "float32",
        "float16",
        "int8 = dynamic_int8",
        "int8_only",
    ]
    xy = [(p["size_bytes"], p["latency_p50_ms"]) for p in points]
    # int8 is beaten by int8_only (smaller and faster): off the front.
    assert [points[i]["label"] for i in pareto_front(xy)] == ["int8_only", "float16", "float32"]
    png = report.write_plot(str(tmp_path), _manifest())
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_labels_do_not_overlap():
    from keras_opt.tflite._plot import size_latency_plot

    # Crowded: five variants within 3% of each other in size and latency, one far away.
    points = [
        {
            "label": f"variant_{i}",
            "size_bytes": 17_000 + 150 * i,
            "latency_p50_ms": 0.030 + 0.0003 * i,
            "metric": 0.9,
            "group": None,
        }
        for i in range(5)
    ]
    points.append(
        {"label": "int16x8", "size_bytes": 20_000, "latency_p50_ms": 3.0, "metric": 0.9,
         "group": None}
    )  # fmt: skip
    fig = size_latency_plot(points, title="t")
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 6
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
    assert ax.get_yscale() == "log"
    assert ax.get_xscale() == "log"


def test_comparison_report_recommends_across_models(tmp_path):
    base = _manifest()
    qat = _manifest()
    qat["keras_metrics"] = {"accuracy": 0.948}
    qat["variants"] = [
        _variant("float32", 17_200, 0.021, 0.9460),
        _variant("int8", 17_200, 0.021, 0.9460, same_file_as="float32"),
    ]
    results = {"baseline": base, "pcqat": qat}
    rec = recommend_comparison(results)
    assert rec["reference"] == "baseline"
    assert rec["smallest"]["name"] == "baseline/int8"
    assert rec["fastest"]["name"] == "baseline/float32"
    assert rec["why_not"]["pcqat/int8"] == "same file as pcqat/float32 (identical sha256)"
    assert "pcqat/float32" in rec["why_not"]
    rows = comparison_rows(results)
    assert len(rows) == 8
    text = format_rows(rows)
    assert re.search(r"\npcqat\s+int8\s+same file as\s+float32$", text)

    paths = write_comparison(tmp_path / "cmp", results, title="cmp", accuracy_budget=0.01)
    with open(paths["markdown"]) as f:
        md = f.read()
    assert md.index("## What to ship") < md.index("| model |")
    assert "Ship baseline/int8 for size or baseline/float32 for speed" in md
    with open(paths["html"]) as f:
        page = f.read()
    assert page.index('id="recommendation"') < page.index('id="variants"')
    assert page.count("<tr") == 1 + 8  # header + one row per variant, twins included
    assert "same file as float32 (identical sha256)" in page
    assert os.path.exists(paths["plot"])
    with pytest.raises(ValueError, match="`reference` must be one of"):
        recommend_comparison(results, reference="nope")


def test_recommendation_lines_list_every_rejection():
    lines = recommendation_lines(recommend(_manifest()))
    assert lines[3] == "  not chosen:"
    assert [ln.split(":")[0].strip() for ln in lines[4:]] == [
        "float16",
        "dynamic_int8",
        "int8_only",
        "int16x8",
    ]
