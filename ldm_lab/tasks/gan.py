"""The adversarial part of LDM's first-stage objective (LDM §3.1 and App. G, after Esser et al. 2021, VQGAN):
a PatchGAN discriminator, hinge losses, and VQGAN's adaptive weight.

Both players share the trainer's single optimizer. Their gradients stay apart because each term sees only its
own player as trainable:

* ``generator_loss`` runs the discriminator through ``torch.func.functional_call`` with *detached* weights:
  its gradient reaches the reconstruction (the autoencoder), never the discriminator;
* ``discriminator_loss`` sees *detached* reconstructions: its gradient reaches the discriminator only.

Summing the two and calling ``backward`` once therefore gives each parameter exactly its own player's gradient,
as two optimizers would. A global gradient-norm clip would couple them (LDM clips neither): train with
``ldm_lab.tasks.autoencoder.ldm_first_stage_train_config``, which turns it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN (Isola et al. 2017, §3.2.2), as LDM's ``NLayerDiscriminator``: strided 4x4 convs that
    give one real/fake logit per overlapping patch, ``(b, 1, h', w')``. Two differences with LDM's (taming's
    ``NLayerDiscriminator``), neither in the architecture's shape: GroupNorm replaces BatchNorm, so the
    discriminator holds no running statistics that the generator's pass would also update; and the layers keep
    PyTorch's default initialisation, where taming's ``weights_init`` draws conv weights from N(0, 0.02) and
    norm scales from N(1, 0.02)."""

    def __init__(self, in_channels: int = 3, width: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = width
        for i in range(1, num_layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False),
                       nn.GroupNorm(min(32, out // 4), out), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


def frozen_call(module: nn.Module, *args: Tensor) -> Tensor:
    """``module(*args)`` with its parameters detached: gradients flow to the inputs only."""
    detached = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, detached, args)


def generator_loss(discriminator: nn.Module, fake: Tensor) -> Tensor:
    """The generator's hinge term, -E[D(x_rec)] (LDM's ``g_loss``), with the discriminator frozen."""
    return -frozen_call(discriminator, fake).mean()


def discriminator_loss(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Hinge loss (Lim & Ye 2017): E[relu(1 - D(x))] + E[relu(1 + D(x_rec))], both halves averaged as LDM's
    ``hinge_d_loss``; the reconstructions are detached."""
    return 0.5 * (F.relu(1 - discriminator(real.detach())).mean() + F.relu(1 + discriminator(fake.detach())).mean())


def adaptive_weight(reconstruction_loss: Tensor, adversarial_loss: Tensor, last_layer: Tensor,
                    max_weight: float = 1e4) -> Tensor:
    """VQGAN's eq. 7 (LDM's ``calculate_adaptive_weight``): ||grad_L rec|| / (||grad_L adv|| + 1e-4) at the
    decoder's last layer L, so the adversarial term pulls about as hard as the reconstruction; clamped to
    [0, max_weight], detached. LDM's 1e4 holds for its summed-over-pixels loss; see
    ``ldm_lab.tasks.autoencoder.max_adaptive_weight`` for our per-pixel means."""
    rec_grad, = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)
    adv_grad, = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()
