"""Tests of the zeroq Python package, against the `zeroq` binary on the shared assets.

Run by `cargo test --release` (tests/it/python.rs installs the package from the checkout and sets
ZEROQ_BIN); by hand: `pip install ./python && ZEROQ_BIN=target/release/zeroq pytest python/tests`.
"""

import ast
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import zeroq

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT.parent / "shared" / "assets"
RESNET20 = ASSETS / "models" / "cifar10" / "resnet20_cifar10.onnx"
CIFAR = ASSETS / "cifar10" / "test_batch.bin"
# Small distillations keep the tests fast; equality does not depend on the size.
SMALL = {"batch": 4, "iters": 12, "seed": 3}


def zeroq_bin() -> str:
    path = os.environ.get("ZEROQ_BIN")
    assert path and os.path.isfile(path), "set ZEROQ_BIN to the zeroq binary (cargo build --release; tests/it/python.rs sets it)"
    return path


def asset(p: Path) -> Path:
    assert p.is_file(), f"missing {p} (the tests need ../shared beside the checkout)"
    return p


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([zeroq_bin(), "--quiet", *args], capture_output=True, text=True)


def cli_ok(*args: str) -> str:
    r = cli(*args)
    assert r.returncode == 0, f"zeroq {' '.join(args)} failed: {r.stderr}"
    return r.stdout


def cli_error(*args: str) -> str:
    """The CLI's one-line error, without its `zeroq: error: ` prefix."""
    r = cli(*args)
    assert r.returncode != 0, f"zeroq {' '.join(args)} succeeded"
    line = r.stderr.strip().splitlines()[0]
    for prefix in ("zeroq: error: ", "error: "):
        line = line.removeprefix(prefix)
    return line


def small_flags():
    return [f"--{k}={v}" for k, v in SMALL.items()]


@pytest.fixture(scope="module")
def cli_distilled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "distilled.npy"
    cli_ok("distill", str(asset(RESNET20)), "-o", str(out), *small_flags())
    return out


def test_distill_returns_the_array_the_cli_writes(cli_distilled):
    arr = zeroq.distill(str(RESNET20), **SMALL, progress=False)
    expected = np.load(cli_distilled)
    assert arr.dtype == np.float32 and arr.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(arr, expected)


def test_quantize_writes_the_same_onnx_bytes_as_the_cli(cli_distilled, tmp_path):
    # Mixed precision exercises a float, a list and an enum option; the calibration data goes in as an array.
    ours, theirs = tmp_path / "py.onnx", tmp_path / "cli.onnx"
    cli_ok("quantize", str(RESNET20), "-o", str(theirs), "--distilled", str(cli_distilled), "--mp", "4", "--mp-bits", "2,4,8", "--act-range", "percentile:99.9")
    report = zeroq.quantize(RESNET20, ours, calib=np.load(cli_distilled), mp=4, mp_bits=[2, 4, 8], act_range="percentile:99.9", progress=False)
    assert ours.read_bytes() == theirs.read_bytes()
    assert report.command == "quantize"
    assert report.output == str(ours)
    assert 3.9 < report.mixed_precision.avg_bits <= 4.0
    assert report.to_dict()["mixed_precision"]["candidates"] == [2, 4, 8]
    assert {w["bits"] for w in report.to_dict()["weights"]} <= {2, 4, 8}


def test_defaults_are_the_clis(cli_distilled, tmp_path):
    # No option given on either side: W8A8 with the CLI's defaults.
    ours, theirs = tmp_path / "py.onnx", tmp_path / "cli.onnx"
    cli_ok("quantize", str(RESNET20), "-o", str(theirs), "--distilled", str(cli_distilled))
    zeroq.quantize(str(RESNET20), str(ours), distilled=str(cli_distilled), progress=False)
    assert ours.read_bytes() == theirs.read_bytes()
    sig = inspect.signature(zeroq.quantize)
    assert sig.parameters["wbits"].default == 8 and sig.parameters["abits"].default == 8
    assert sig.parameters["mp"].default is None and sig.parameters["calib"].default == "distilled"


def test_evaluate_arrays_matches_the_cli_on_the_same_images():
    raw = np.fromfile(asset(CIFAR), dtype=np.uint8).reshape(-1, 3073)[::50]  # 200 images, every 50th (as --limit 200)
    labels = raw[:, 0].astype(np.int64)
    pixels = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    images = (pixels - mean) / std
    got = zeroq.evaluate(RESNET20, images, labels, progress=False)
    import json

    expected = json.loads(cli_ok("--json", "eval", str(RESNET20), "--data", f"cifar10:{CIFAR}", "--limit", "200"))
    assert got["n"] == expected["n"] == 200
    assert got["top1"] == expected["top1"] and got["top5"] == expected["top5"]
    by_spec = zeroq.evaluate(RESNET20, f"cifar10:{CIFAR}", limit=200, progress=False)
    assert by_spec["top1"] == expected["top1"] and by_spec["data"] == expected["data"]


def test_errors_carry_the_clis_message(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(zeroq.ZeroqError) as e:
        zeroq.quantize(missing, tmp_path / "q.onnx", progress=False)
    assert str(e.value) == cli_error("quantize", str(missing), "-o", str(tmp_path / "q.onnx"))
    assert str(missing) in str(e.value)
    # A value the option parser refuses.
    with pytest.raises(zeroq.ZeroqError) as e:
        zeroq.quantize(RESNET20, tmp_path / "q.onnx", wbits="eight", progress=False)
    assert str(e.value) == cli_error("quantize", str(RESNET20), "-o", str(tmp_path / "q.onnx"), "--wbits", "eight")
    assert "--wbits" in str(e.value)
    # A value the command refuses.
    with pytest.raises(zeroq.ZeroqError, match="weight bits must be 2..=8, got 9"):
        zeroq.quantize(RESNET20, tmp_path / "q.onnx", wbits=9, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'wbitz'"):
        zeroq.quantize(RESNET20, tmp_path / "q.onnx", wbitz=4)
    with pytest.raises(zeroq.ZeroqError, match="labels: 3 labels for 2 images"):
        zeroq.evaluate(RESNET20, np.zeros((2, 3, 32, 32), np.float32), [0, 1, 2], progress=False)
    assert not (tmp_path / "q.onnx").exists()


def tiny_net():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.train()  # export must not depend on, or change, the mode


def test_torch_module_export_quantize_onnxruntime(tmp_path):
    import onnxruntime as ort
    import torch

    net = tiny_net()
    stats = [t.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) for t in (m.running_mean, m.running_var)]
    calib = zeroq.distill(net, input_shape=(1, 3, 32, 32), batch=8, iters=30, progress=False)
    out = tmp_path / "tiny_w8a8.onnx"
    report = zeroq.quantize(net, out, input_shape=(3, 32, 32), calib=calib, progress=False)
    assert net.training, "the module's training mode was not restored"
    after = [t for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) for t in (m.running_mean, m.running_var)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after)), "the export changed the BN statistics"
    assert len(report.weights) == 3 and report.abits == 8

    x = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        fp32 = net.eval()(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    q = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert q.shape == fp32.shape
    # W8A8 on three layers: logit error of a few percent of the logit range; the bound leaves 3x margin.
    err = np.abs(q - fp32).max() / np.abs(fp32).max()
    assert err < 0.1, f"quantized logits differ from PyTorch by {err:.3f} of the largest logit"
    assert (q.argmax(1) == fp32.argmax(1)).mean() >= 0.8


def test_progress_callback_sees_every_step():
    events = []
    zeroq.distill(RESNET20, batch=2, iters=5, no_early_stop=True, progress=events.append)
    steps = [e for e in events if e["kind"] == "progress"]
    assert [e["done"] for e in steps] == [0, 1, 2, 3, 4, 5]
    assert all(e["stage"] == "distill" and e["total"] == 5 for e in steps)


def test_messages_reach_a_replaced_sys_stderr(monkeypatch, tmp_path):
    # As in a notebook, where sys.stderr is not the process's stderr: the CLI's lines go to sys.stderr.
    import io

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    zeroq.run(RESNET20, tmp_path / "run", batch=2, iters=3)
    lines = sys.stderr.getvalue().splitlines()
    assert any(line.startswith("[1/") and "load" in line for line in lines), lines


def test_ctrl_c_during_distill_leaves_nothing_behind(tmp_path):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    script = textwrap.dedent(
        f"""
        import signal, sys, zeroq
        # What an interactive Python has. A parent that ignores SIGINT (a background job of a
        # non-interactive shell, e.g. `nohup … &`) passes that on, and Python then installs no handler,
        # so the signal would be ignored before zeroq ever saw it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        def progress(e):
            if e["kind"] == "progress" and e["done"] == 2:
                print("started", flush=True)
        try:
            zeroq.distill({str(RESNET20)!r}, {str(out / "d.npy")!r}, batch=8, iters=5000, no_early_stop=True, progress=progress)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
        print("finished", flush=True)
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp)}
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline().strip()
        assert line == "started", f"no progress before the interrupt: {line!r} {p.stderr.read()}"
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, f"exit {p.returncode}: {rest} {err}"
    assert rest.strip() == "interrupted"
    assert time.monotonic() - sent < 10, "the interrupt took effect only after the work"
    assert list(out.iterdir()) == [], "a file was left in the output folder"
    assert list(tmp.iterdir()) == [], "a temporary file was left behind"


def test_run_writes_the_folder_and_returns_its_report(tmp_path):
    out = tmp_path / "run"
    report = zeroq.run(RESNET20, out, batch=2, iters=4, progress=False)
    assert report.config == "W8A8" and report.layers[0]["bits"] == 8
    assert (out / "quantized.onnx").is_file() and (out / "report.json").is_file()
    import json

    assert json.loads((out / "report.json").read_text())["config"] == report.config
    with pytest.raises(zeroq.ZeroqError, match="already holds files; pass --force"):
        zeroq.run(RESNET20, out, batch=2, iters=4, progress=False)


def test_inspect_and_sensitivity_reports(cli_distilled, tmp_path):
    import json

    r = zeroq.inspect(str(RESNET20))
    assert r.batch_norms == 19 and r.total_params == 268336
    assert r.to_dict() == json.loads(cli_ok("--json", "inspect", str(RESNET20)))
    ours, theirs = tmp_path / "py.json", tmp_path / "cli.json"
    cli_ok("sensitivity", str(RESNET20), "-o", str(theirs), "--distilled", str(cli_distilled), "--bits", "2,8")
    s = zeroq.sensitivity(RESNET20, ours, distilled=np.load(cli_distilled), bits=[2, 8], progress=False)
    assert ours.read_bytes() == theirs.read_bytes()
    assert s.sensitivity.bits == [2, 8] and len(s.sensitivity.layers) == 20


def test_stubs_match_the_runtime_signatures():
    """The .pyi (for editors and type checkers) must list every option with the CLI's default; the runtime
    signatures come from the CLI's parser, so an option added there fails here until the stub has it."""
    stub = ast.parse((Path(zeroq.__file__).parent / "__init__.pyi").read_text())
    funcs = {f.name: f for f in stub.body if isinstance(f, ast.FunctionDef)}
    for name in ["inspect", "distill", "sensitivity", "quantize", "run", "evaluate"]:
        f = funcs[name]
        args = f.args
        stub_params = {a.arg: d for a, d in zip(args.args[len(args.args) - len(args.defaults):], args.defaults)}
        stub_params.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
        stub_defaults = {k: ast.literal_eval(v) for k, v in stub_params.items()}
        names = [a.arg for a in args.args + args.kwonlyargs]
        runtime = inspect.signature(getattr(zeroq, name)).parameters
        assert names == list(runtime), f"{name}: stub parameters {names} != runtime {list(runtime)}"
        for p in runtime.values():
            if p.default is not inspect.Parameter.empty:
                assert stub_defaults.get(p.name) == p.default, f"{name}({p.name}=...): stub default {stub_defaults.get(p.name)!r}, CLI default {p.default!r}"
