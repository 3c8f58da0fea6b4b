"""`keras-opt demo` end to end, and its HTML report rendered in headless Chromium.

The demo runs in the flavor of the session: in the Keras 3 session with no
``TF_USE_LEGACY_KERAS`` at all (the default a user gets: native engine), in the
tf_keras session with ``TF_USE_LEGACY_KERAS=1`` (TFMOT).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_opt.backend import flavor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The demo's fixture runs it whole (a few minutes on 2 busy cores): more than the default 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ENGINE = {"keras3": "keras_opt native engine (Keras 3)", "tf_keras": "TFMOT"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "digits"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if flavor() == "tf_keras":
        env["TF_USE_LEGACY_KERAS"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_opt",
            "demo",
            "--out",
            str(out),
            "--epochs",
            "4",
            "--finetune-epochs",
            "1",
            "--runs",
            "5",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_demo_walks_the_whole_road(demo):
    out, proc = demo
    for step in ("[1/5] LR range test", "[2/5] training", "[3/5] PCQAT", "[4/5] exporting"):
        assert step in proc.stdout
    # It says which Keras and which compression engine ran, and shows each PCQAT stage.
    assert ENGINE[flavor()] in proc.stdout.splitlines()[0]
    for stage in ("prune", "cluster", "quantize"):
        assert re.search(rf"^ +{stage} +loss [\d.]+ +val_acc [\d.]+", proc.stdout, re.M), stage
    # keras_opt's own warnings (TrainingMonitor events) go to the log, not the terminal.
    assert "TrainingMonitor:" not in proc.stdout + proc.stderr
    # Readable terminal: no TensorFlow/absl/converter chatter.
    for spam in ("absl::InitializeLog", "cudart_stub", "XNNPACK delegate", "fully_quantize"):
        assert spam not in proc.stdout + proc.stderr
    # Closes with the recommendation first, then the table, and says where the report is.
    ship = re.search(r"^Ship \S+/\S+", proc.stdout, re.M)
    table = re.search(r"model\s+variant\s+size\s+gzipped\s+p50 ms\s+accuracy", proc.stdout)
    assert ship, proc.stdout[-2000:]
    assert table
    assert ship.start() < table.start()
    assert f"Report: {out / 'report.html'}" in proc.stdout


def test_demo_writes_measured_reports(demo):
    out, _ = demo
    for name in ("report.md", "manifest.json", "report.html", "lr_finder.png"):
        assert (out / name).stat().st_size > 0, name
    manifest = json.loads((out / "manifest.json").read_text())
    facts = manifest["summary"]
    if flavor() == "keras3":
        assert facts["Keras flavor"].startswith("Keras 3 (3.")
        assert facts["Compression engine"] == ENGINE["keras3"]
    else:
        assert facts["Keras flavor"].startswith("tf_keras 2.")
        assert facts["Compression engine"].startswith("TFMOT 0.")
    assert facts["PCQAT kernel sparsity (read from the weights)"] == "50.0%"
    assert facts["PCQAT max unique values per output channel"] <= 16
    rows = manifest["rows"]
    assert {r["model"] for r in rows} == {"baseline", "pcqat"}
    assert len(rows) == 12  # every variant of both models, converted or left out
    # Export leaves some variants out for a QAT model (int16x8: trained int8 ranges), with why.
    left_out = [r for r in rows if r.get("left_out")]
    assert {r["model"] for r in left_out} <= {"pcqat"}
    assert all("quantization-aware" in r["left_out"] for r in left_out)
    ok = {(r["model"], r["variant"]): r for r in rows if not (r["error"] or r.get("left_out"))}
    assert ("baseline", "int8") in ok
    assert ("pcqat", "int8") in ok
    for (model, variant), row in ok.items():
        path = out / model / f"{variant}.tflite"
        assert row["size_bytes"] == path.stat().st_size
        assert row["metric"] > 0.8
    # PCQAT survives into the int8 file: compressed gzip size below the baseline's.
    assert ok[("pcqat", "int8")]["gzip_bytes"] < 0.8 * ok[("baseline", "int8")]["gzip_bytes"]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.mark.skipif(
    _chromium() is None, reason="Chromium not installed (scripts/test.sh installs it)"
)
def test_html_report_renders_in_headless_chromium(demo, tmp_path):
    out, _ = demo
    url = (out / "report.html").as_uri()
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "<title>keras-opt demo: digits</title>" in page
    assert len(re.findall(r"<tr[ >]", page)) == 13  # header + 12 variants (or why left out)
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)
    assert len(images) >= 3  # comparison plot, LR finder, training curves: inline
    shot = tmp_path / "shot.png"
    render = subprocess.run(
        [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1000,1600",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert render.returncode == 0, render.stderr[-2000:]
    assert shot.exists()
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    # Not a blank page: the inline plots put many distinct colours on screen.
    assert len(np.unique((pixels[..., :3] * 255).astype(int).reshape(-1, 3), axis=0)) > 50
