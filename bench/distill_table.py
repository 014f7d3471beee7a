#!/usr/bin/env python3
"""Distillation ms/iteration and peak RSS, zeroq vs PyTorch, over several models: the table of issue 11.

For each case, back to back on the same machine: `zeroq distill --zeroq-recipe` (the peer's recipe;
Gaussian init, seed 0, --json) and bench/distill_peer.py with the same batch, iterations and threads. Each runs as its own process; its peak
RSS is that process's (wait4's ru_maxrss). The PyTorch peer of a zoo or --arch model is the ONNX file
`zeroq export-onnx` writes for it, converted with onnx2torch; ResNet20/56 use the native PyTorch model.
Then, with --eval (default on), eval throughput on the 10,000 CIFAR-10 test images: `zeroq eval` on ResNet20
(its default batch) against ONNX Runtime on the same ONNX file (at zeroq's batch and at 500, the faster counts),
and EfficientNet-Lite0 (zoo, exported to ONNX) inference on one fixed synthetic batch of 32 at 224²
(benches/forward.rs against ONNX Runtime on the same file and input: no JPEG decoding in either timing).
Prints one table (ratios zeroq/peer) and writes the JSON to the path given with --out.

Usage (from the repo root, release build present):
  python3 bench/distill_table.py [--cases resnet20,lite0-b8,...] [--iters 30] [--threads 2] [--out F.json]
Cases: resnet20, resnet56 (batch 32), lite0-b8, lite0-b32 (EfficientNet-Lite0 from the zoo, 224²),
mobilenetv2-b8 (torchvision MobileNetV2 on seeded random weights, 224²).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ASSETS = "../shared/assets/models/cifar10"
ZEROQ = os.environ.get("ZEROQ", "./target/release/zeroq")


def run(cmd, env=None):
    """Runs cmd; returns (last stdout line, peak RSS MiB of that process)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"distill_table: {' '.join(cmd)} failed ({status})")
    return out.strip().splitlines()[-1], usage.ru_maxrss / 1024


def mobilenet_weights(path):
    """A torchvision-named MobileNetV2 state_dict on torch.manual_seed(0) weights (timing only)."""
    import torch

    sys.path.insert(0, "tests/golden")
    from torchvision_logits import MobileNetV2

    torch.manual_seed(0)
    torch.save(MobileNetV2().state_dict(), path)


def cases(tmp):
    """name -> (zeroq model args, batch, peer model args); zoo/arch models exported to ONNX for the peer."""
    def exported(name, model_args):
        onnx = os.path.join(tmp, f"{name}.onnx")
        if not os.path.exists(onnx):
            subprocess.run([ZEROQ, "export-onnx", *model_args, "-o", onnx], check=True, stdout=subprocess.DEVNULL)
        return ["--onnx", onnx]

    def resnet(depth, th):
        return lambda: ([f"{ASSETS}/resnet{depth}_cifar10.onnx"], 32, ["--model-th", f"{ASSETS}/{th}"])

    def zoo(batch):
        args = ["--zoo", "efficientnet-lite0"]
        return lambda: (args, batch, exported("lite0", args))

    def mobilenet():
        pth = os.path.join(tmp, "mobilenet_v2.pth")
        if not os.path.exists(pth):
            mobilenet_weights(pth)
        args = ["--arch", "mobilenet-v2", "--weights", pth]
        return args, 8, exported("mobilenetv2", args)

    return {
        "resnet20": resnet(20, "resnet20-12fca82f.th"),
        "resnet56": resnet(56, "resnet56-4bfd9763.th"),
        "lite0-b8": zoo(8),
        "lite0-b32": zoo(32),
        "mobilenetv2-b8": mobilenet,
    }


def eval_row(threads, env, rounds=3):
    """ResNet20 eval images/s: zeroq eval (its default batch) vs ONNX Runtime, alternating `rounds` times.

    ONNX Runtime runs at zeroq's batch and at 500; its figure per round is the faster of the two (both
    engines run small batches faster: the activations stay in cache). The ratio is of the medians over
    the rounds: this machine's speed drifts by up to ±15% within minutes, and one back-to-back pair
    moved the ratio by as much."""
    import statistics
    import time

    import numpy as np

    sys.path.insert(0, "bench")
    from engine_peer import load_cifar, ort_session

    model, data = f"{ASSETS}/resnet20_cifar10.onnx", "../shared/assets/cifar10/test_batch.bin"
    x, labels = load_cifar(data)
    sess = ort_session(model, threads)
    name = sess.get_inputs()[0].name
    zq_runs, ort_runs, ort_by_batch = [], [], {}
    for _ in range(rounds):
        zq, _ = run([ZEROQ, "eval", model, "--data", f"cifar10:{data}", "--json", "--quiet", "--threads", str(threads)], env)
        z = json.loads(zq)
        zq_runs.append(z["images_per_s"])
        ort = {}
        for batch in sorted({z["batch"], 500}):
            sess.run(None, {name: x[:batch]})
            t0 = time.perf_counter()
            logits = np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])
            ort[batch] = len(x) / (time.perf_counter() - t0)
            ort_by_batch.setdefault(str(batch), []).append(ort[batch])
        best = max(ort, key=ort.get)
        ort_runs.append(ort[best])
    return {"zeroq_images_per_s": statistics.median(zq_runs), "zeroq_batch": z["batch"],
            "ort_images_per_s": statistics.median(ort_runs), "ort_batch": best,
            "zeroq_runs": zq_runs, "ort_runs": ort_runs, "ort_images_per_s_by_batch": ort_by_batch,
            "zeroq_top1": z["top1"], "ort_top1": 100.0 * float((logits.argmax(1) == labels).mean())}


def forward_row(name, onnx, batch, threads, iters, env):
    """Inference images/s on one fixed synthetic batch: zeroq (benches/forward.rs) vs ONNX Runtime, back to back."""
    import numpy as np

    sys.path.insert(0, "bench")
    from engine_peer import bench, ort_session

    zq, _ = run(["cargo", "bench", "--quiet", "--bench", "forward", "--", onnx, "--batch", str(batch),
                 "--iters", str(iters), "--threads", str(threads)], env)
    z = json.loads(zq)
    sess = ort_session(onnx, threads)
    inp = sess.get_inputs()[0]
    shape = [batch, *inp.shape[1:]]
    # The same input as benches/forward.rs: ((i * 7919) % 1000) / 500 - 1 over the flat index.
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    x = (((i * 7919) % 1000).astype(np.float32) / 500.0 - 1.0).reshape(shape)
    median, _ = bench(lambda: sess.run(None, {inp.name: x}), iters, warmup=2)
    return {"case": name, "batch": batch, "zeroq_images_per_s": z["zeroq_images_per_s"],
            "ort_images_per_s": batch * 1e3 / median, "zeroq_ms_per_batch": z["zeroq_ms_per_batch"],
            "ort_ms_per_batch": median}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="resnet20,resnet56,lite0-b8,lite0-b32,mobilenetv2-b8")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--no-eval", action="store_true", help="skip the eval row")
    a = p.parse_args()
    # Under CPU contention PyTorch's OpenMP spin-wait collapses; passive waiting keeps the peer honest.
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        table = cases(tmp)
        for name in a.cases.split(","):
            if name not in table:
                sys.exit(f"distill_table: unknown case {name!r} (known: {', '.join(table)})")
            model, batch, peer_model = table[name]()
            common = ["--batch", str(batch), "--iters", str(a.iters), "--seed", "0", "--threads", str(a.threads)]
            # --zeroq-recipe: the peer's recipe (ZeroQ's loss, N(0, 1) prior, no pixel box, no early stop), so both
            # do the same work per iteration and their losses can be compared.
            zq, zq_rss = run([ZEROQ, "distill", *model, "-o", os.path.join(tmp, "d.npy"), "--json", "--quiet",
                              "--zeroq-recipe", *common], env)
            pt, pt_rss = run([sys.executable, "bench/distill_peer.py", *peer_model, *common], env)
            z, t = json.loads(zq), json.loads(pt)
            rows.append({
                "case": name, "batch": batch, "iters": a.iters, "threads": a.threads,
                "zeroq_ms_per_iter": z["ms_per_iteration"], "torch_ms_per_iter": t["torch_ms_per_iter"],
                "zeroq_peak_rss_mib": zq_rss, "torch_peak_rss_mib": pt_rss,
                "zeroq_loss": [z["loss_start"][0], z["loss_end"][0]],
                "torch_loss": [t["torch_loss_start"], t["torch_loss_end"]],
            })
            r = rows[-1]
            print(f"{name}: zeroq {r['zeroq_ms_per_iter']:.1f} ms/it, PyTorch {r['torch_ms_per_iter']:.1f} ms/it",
                  file=sys.stderr)
    print(f"distillation, {a.iters} iterations, {a.threads} threads, seed 0")
    head = f"{'case':16} {'batch':>5} {'zeroq ms/it':>12} {'torch ms/it':>12} {'ratio':>7} " \
           f"{'zeroq RSS':>10} {'torch RSS':>10} {'ratio':>7}  loss 0 -> last (zeroq | torch)"
    print(head)
    for r in rows:
        zl, tl = r["zeroq_loss"], r["torch_loss"]
        print(f"{r['case']:16} {r['batch']:5} {r['zeroq_ms_per_iter']:12.1f} {r['torch_ms_per_iter']:12.1f} "
              f"{r['zeroq_ms_per_iter'] / r['torch_ms_per_iter']:6.2f}x "
              f"{r['zeroq_peak_rss_mib']:7.0f} MiB {r['torch_peak_rss_mib']:6.0f} MiB "
              f"{r['zeroq_peak_rss_mib'] / r['torch_peak_rss_mib']:6.2f}x  "
              f"{zl[0]:.4g} -> {zl[1]:.4g} | {tl[0]:.4g} -> {tl[1]:.4g}")
    result = {"distill": rows}
    if not a.no_eval:
        e = eval_row(a.threads, env)
        result["eval"] = e
        runs = lambda v: ", ".join(f"{r:.0f}" for r in v)
        print(f"eval ResNet20, 10,000 CIFAR-10 images, median of {len(e['zeroq_runs'])} alternating rounds: "
              f"zeroq {e['zeroq_images_per_s']:.0f} images/s (batch {e['zeroq_batch']}; {runs(e['zeroq_runs'])}), "
              f"ONNX Runtime {e['ort_images_per_s']:.0f} images/s (per round the faster of batch "
              f"{', '.join(e['ort_images_per_s_by_batch'])}; {runs(e['ort_runs'])}), "
              f"ratio {e['zeroq_images_per_s'] / e['ort_images_per_s']:.2f}x (higher is better); "
              f"top-1 {e['zeroq_top1']:.2f}% | {e['ort_top1']:.2f}%")
        with tempfile.TemporaryDirectory() as tmp:
            onnx = os.path.join(tmp, "lite0.onnx")
            subprocess.run([ZEROQ, "export-onnx", "--zoo", "efficientnet-lite0", "-o", onnx], check=True,
                           stdout=subprocess.DEVNULL)
            f = forward_row("lite0", onnx, 32, a.threads, max(3, min(a.iters, 10)), env)
        result["eval_lite0"] = f
        print(f"eval EfficientNet-Lite0 224², batch 32, synthetic input: zeroq {f['zeroq_images_per_s']:.1f} images/s, "
              f"ONNX Runtime {f['ort_images_per_s']:.1f} images/s, "
              f"ratio {f['zeroq_images_per_s'] / f['ort_images_per_s']:.2f}x (higher is better)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"saved {a.out}")


if __name__ == "__main__":
    main()
