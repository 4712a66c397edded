"""The machine's rates behind the floors in docs/benchmarks.md.

    python benchmarks/kernels.py        # about 30 s

- matmul: TFLOP/s of a training-sized product (M rows x 576 x 1536, SmolLM2's MLP) in bfloat16 and float32;
- weight streaming: a decode step's pattern, M = 8 rows through 150 distinct 1536 x 576 weights (265 MB
  in bfloat16, more than any cache), with `linear` and with weights prepacked by oneDNN, in GB/s of weights
  read; and a plain `sum` over 64 MB as the memory's own reading rate.
"""

from __future__ import annotations

import time

import torch


def best_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_rate(dtype: torch.dtype, rows: int) -> float:
    x, w = torch.randn(rows, 576, dtype=dtype), torch.randn(1536, 576, dtype=dtype)
    seconds = best_seconds(lambda: [torch.nn.functional.linear(x, w) for _ in range(20)]) / 20
    return 2 * rows * 576 * 1536 / seconds / 1e12


def streaming_rates(dtype: torch.dtype) -> dict[str, float]:
    weights = [torch.randn(1536, 576, dtype=dtype) for _ in range(150)]
    x = torch.randn(8, 576, dtype=dtype)
    total = sum(w.numel() * w.element_size() for w in weights)
    rates = {"linear": total / best_seconds(lambda: [torch.nn.functional.linear(x, w) for w in weights])}
    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    if reorder is not None and torch.backends.mkldnn.is_available():
        packed = [reorder(w, None) for w in weights]
        pointwise = torch.ops.mkldnn._linear_pointwise
        rates["prepacked"] = total / best_seconds(
            lambda: [pointwise(x, p, None, "none", [], "") for p in packed]
        )
    return {name: rate / 1e9 for name, rate in rates.items()}


def main() -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for dtype in (torch.bfloat16, torch.float32):
        name = str(dtype).removeprefix("torch.")
        for rows in (64, 1024):
            print(f"matmul {name:8} {rows:5} x 576 x 1536: {matmul_rate(dtype, rows):.3f} TFLOP/s")
        for how, rate in streaming_rates(dtype).items():
            print(f"decode-step weights {name:8} M=8 {how:9}: {rate:5.1f} GB/s")
    big = torch.randn(32 * 1024 * 1024)  # 128 MB
    print(f"memory read (sum over 128 MB): {big.numel() * 4 / best_seconds(big.sum) / 1e9:.1f} GB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
