"""Shared test settings."""

import torch

# Intra-op threads cost far more than they save on the small tensors of the
# test suite, and badly so on a loaded 2-core CI machine.
torch.set_num_threads(1)
