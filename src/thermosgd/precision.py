"""Full float32 while training on a GPU: TensorFloat-32 off, the caller's settings restored after.

PyTorch lets cuDNN run float32 convolutions in TF32 by default (10-bit mantissa, on
Ampere and later GPUs), and matmuls too when ``torch.set_float32_matmul_precision`` asks
for it. A float32 CNN study then differed from the same study on the CPU by up to
8·10⁻⁴ relative in its loss after 20 steps (measured on an H200), where float32 rounding
in another order gives about 10⁻⁶: the device would change the measurement. Training
runs in full float32 on every device instead; the flags are the process's, so they are
put back as they were when training ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def full_float32() -> Iterator[None]:
    """Within the block, cuDNN convolutions and CUDA matmuls compute float32 in float32 (no TF32)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = False
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before
