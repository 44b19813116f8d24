"""The Lightning callback with a real Trainer on the CPU (skipped without lightning)."""

import copy

import pytest
import torch
from torch import nn

lightning = pytest.importorskip("lightning")

from thermosgd.instruments import combine_runs, every, gradient_variance, weight_norms  # noqa: E402
from thermosgd.instruments.lightning import InstrumentCallback  # noqa: E402


class Net(lightning.pytorch.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1))
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's advice on workers, logging and devices
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")  # Lightning against this torch's pytree API
def test_callback_records_what_the_instruments_give_on_the_trained_module(tmp_path):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64, 1), generator=g).float()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = Net()
    initial = copy.deepcopy(model)
    cb = InstrumentCallback(nn.BCEWithLogitsLoss(), x[:16], y[:16], every(4), lr=0.1, batch_size=8)
    trainer = lightning.pytorch.Trainer(
        max_steps=8,
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader)
    ds = combine_runs([cb.to_dataset()], config={"lightning": True})
    assert list(ds.step.values) == [0, 4, 8]
    for step, net in ((0, initial), (8, model)):
        net.train()
        want = gradient_variance(net, nn.BCEWithLogitsLoss(), x[:16], y[:16]).value
        assert ds.grad_var.sel(step=step).item() == pytest.approx(want, rel=1e-6)
        assert ds.weight_norm.sel(step=step).item() == pytest.approx(weight_norms(net).value, rel=1e-6)
    assert ds.grad_var.sel(step=0).item() != ds.grad_var.sel(step=8).item()
    assert "activation_rate" in ds
