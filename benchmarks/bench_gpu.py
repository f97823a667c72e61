"""The colab pipeline on a CUDA machine, checked against the CPU (scripts/gpu_check.sh runs it).

On look-alike data (MedMNIST-format ChestMNIST files made from the shipped real radiographs, as in
tests/test_real_data_path.py) and random weights for each backbone (ViT-B-16, ViT-L-14-336; no network
needed): feature-extraction images/s on the GPU, the time to train SD-MAD's head (tuned, 3 folds) on
the GPU-extracted features, the peak GPU memory, and the largest difference between GPU and CPU
features and scores (the tolerance a float16/TF32 GPU path should meet). Writes a JSON for the costs page.

    python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json [--backbones ViT-B-16,ViT-L-14-336]
    python benchmarks/bench_gpu.py --device cpu --backbones ViT-S-32 --json /tmp/gpu_smoke.json   # a smoke test
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="ViT-B-16,ViT-L-14-336")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    from test_real_data_path import _chestmnist  # the look-alike data of the rehearsal test

    import open_clip

    from sdmad_lite import methods
    from sdmad_lite.config import default_config
    from sdmad_lite.features import extract
    from sdmad_lite.models.backbone import load
    from sdmad_lite.task import get_task

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run this where `nvidia-smi` shows a GPU (or pass --device cpu for a smoke test)")
        return 2
    out = {"device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
           "torch": torch.__version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "medmnist"
        data.mkdir()
        _chestmnist(data)
        for name in a.backbones.split(","):
            torch.manual_seed(0)
            ck = tmp / f"{name}.bin"
            torch.save(open_clip.create_model(name, pretrained=None).state_dict(), ck)
            row = {"backbone": name}
            feats = {}
            for dev in (a.device, "cpu"):
                bb = load(name, str(ck), device=dev)
                imgs = np.load(data / "chestmnist_224.npz")["test_images"]
                if dev.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                    torch.cuda.synchronize()
                t = time.perf_counter()
                f = extract(bb, lambda i: imgs[i], len(imgs), [bb.n_blocks // 2, bb.n_blocks], batch_size=32)
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                    row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
                row[f"extract_images_per_s_{'gpu' if dev != 'cpu' else 'cpu'}"] = len(imgs) / (time.perf_counter() - t)
                feats[dev] = f
                if dev == "cpu" or a.device == "cpu":
                    break
            if a.device != "cpu":
                row["max_abs_feature_diff_gpu_vs_cpu"] = float((feats[a.device].pooled.float()
                                                                - feats["cpu"].pooled.float()).abs().max())
            cfg = methods.config_for("sdmad", default_config(
                "colab", k_shot=1, protocols=["integrated"],
                data={"dataset": "chestmnist", "root": str(data), "n_test": 0, "n_pool": 0},
                model={"backbone": name, "pretrained": str(ck), "device": a.device, "weights_tag": None}))
            task = get_task(cfg)
            sup = task.draw_support(1, 0)
            t = time.perf_counter()
            pred, fitted = methods.predict(task, sup, cfg)
            row["head_train_and_score_s"] = time.perf_counter() - t
            row["tuned_epochs"] = fitted.tuned.epochs
            out["rows"].append(row)
            print(row, flush=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1))
    print("wrote", a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
