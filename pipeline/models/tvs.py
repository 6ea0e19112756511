r"""Weighted-fidelity spectral total variation (TVS), the DLW source model "TVS".

.. math:: \min_X\ \tfrac12 \sum_i w_i (y_i - x_i)^2 + \lambda \|D_b X\|_1,

with :math:`(D_b X)_{c} = X_{c+1} - X_c` between neighbouring bands at every pixel: periodic
along the bands by default, as the reference (band :math:`C-1` is compared with band 0), or
``boundary: neumann`` (no difference after the last band, first and last bands never coupled).
Same ADMM, settings, residuals and unrolled reference order as :mod:`pipeline.models.tv`, with
:math:`D = D_b` (Rui et al., arXiv 2301.06081; their ``net.py``, ``HWTV_S``, which permutes the
cube to put the bands last and differences them with ``torch.roll``, i.e. periodically);
the :math:`Z`-update is an exact FFT (periodic) or symmetric-extension FFT (Neumann) along the
band axis. With a forward operator :math:`A` (``solve(..., converge=True, A=A)``) the model is
:math:`\min_Z \tfrac12 \sum w (y - AZ)^2 + \lambda \|D_b Z\|_1`, solved as in
:mod:`pipeline.models.tv`; a circular blur commutes with :math:`D_b` (one acts on the pixels,
the other on the bands), so its :math:`Z`-update stays exact for both boundaries (2-D DFT
:math:`\otimes` band DFT or DCT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.models.differences import FiniteDifference, spectral_difference
from pipeline.models.tv import TVParams, _TVFamily

__all__ = ["TVS", "TVSParams"]


@dataclass(frozen=True)
class TVSParams(TVParams):
    """Spectral TV: the reference settings are those of spatial TV."""


class TVS(_TVFamily):
    r"""Spectral TV, :math:`R = \lambda \|D_b X\|_1`."""

    name: ClassVar[str] = "tvs"
    Params: ClassVar[type] = TVSParams
    role: ClassVar[str] = "target"
    unrolled_cost: ClassVar[float | None] = 1.1
    # Spectral TV does not control the spatial frequencies a blur or a down-sampling removes
    # (the Z-system μ₁KᵀK + μ₂D_bᵀD_b is singular where k̂ = 0 on band-constant images): only
    # inpainting of pixels missing in some bands is well posed (a whole missing spectrum is not).
    operators: ClassVar[tuple[str, ...]] = ("identity", "inpaint")

    def difference(self) -> FiniteDifference:
        return spectral_difference(self.params.boundary)
