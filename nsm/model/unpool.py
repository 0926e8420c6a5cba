"""The WHAT step: unpooling a coarse graph back onto the finer one, and the cycle loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nsm.model.dropout import dropout
from nsm.model.rgcn import EdgePlan, RGCNLayer


def cycle_loss(reconstruction: Tensor, encoded: Tensor) -> Tensor:
    r"""Cycle-consistency loss :math:`\textrm{MSE}(\hat{\mathbf{H}}, \textrm{sg}(\textrm{LN}(\mathbf{H})))`.

    The target is the encoded features, layer-normalised per node (no affine parameters) and
    detached. Both choices guard against collapse: if the target could move, encoder and decoder
    would both be pulled towards shrinking their features, where an MSE is trivially zero;
    normalised, the target has zero mean and unit variance per node whatever the encoder's scale,
    and detached, the only way to lower the loss is for the coarse levels to keep enough
    information to rebuild the finer one, which is the point of the WHY/WHAT cycle. It also puts
    the loss on the same scale at every level and in every domain (about 1 for a decoder that
    predicts zeros). Computed in float32 (also under autocast), float64 for float64 inputs.
    """
    acc = torch.promote_types(encoded.dtype, torch.float32)
    target = F.layer_norm(encoded.detach().to(acc), encoded.shape[-1:])
    return F.mse_loss(reconstruction.to(acc), target)


class WhatUnpool(nn.Module):
    r"""The WHAT step: the inverse of :class:`~nsm.model.pool.WhyPool`.

    Coarse node features return to the slots of the nodes they were pooled from; the dropped
    nodes start from a learned fill vector :math:`\mathbf{f}`, and one R-GCN layer on the finer
    typed graph propagates information into them. A linear head reconstructs the finer level's
    encoded features for the cycle loss (:func:`cycle_loss`):

    .. math::
        \mathbf{U}_i = \begin{cases} \mathbf{X}^{c}_{p^{-1}(i)} & i \in \mathbf{p} \\
            \mathbf{f} & \text{otherwise} \end{cases}, \qquad
        \mathbf{H} = \textrm{ReLU}(\textrm{RGCN}(\mathbf{U}, \mathcal{E})), \qquad
        \hat{\mathbf{X}} = \mathbf{H}\mathbf{W}_{\textrm{rec}} + \mathbf{b}_{\textrm{rec}}.

    Args:
        in_channels (int): Size of each coarse node feature.
        out_channels (int): Size of each decoded fine node feature (and of the reconstruction).
        num_relations (int): Number of relations.
        num_bases (int, optional): Bases of the R-GCN layer. (default: :obj:`None`)
        dropout (float, optional): Dropout on the decoded features. (default: :obj:`0.0`)

    Shapes:
        - **input:** coarse features :math:`(K, C_{in})`, ``perm`` :math:`(K)`, the finer graph's
          :class:`~nsm.model.rgcn.EdgePlan` (:math:`N` nodes)
        - **output:** decoded features :math:`(N, C_{out})`, reconstruction :math:`(N, C_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_relations: int,
        num_bases: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.fill = nn.Parameter(torch.empty(in_channels))
        self.conv = RGCNLayer(in_channels, out_channels, num_relations, num_bases=num_bases)
        self.recon = nn.Linear(out_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fill)
        self.conv.reset_parameters()
        self.recon.reset_parameters()

    def unpool(self, x: Tensor, perm: Tensor, num_nodes: int) -> Tensor:
        """Scatter ``x`` back to rows ``perm`` of an ``[num_nodes, C]`` tensor filled with ``fill``."""
        if x.dim() != 2 or x.size(1) != self.in_channels or perm.numel() != x.size(0):
            raise ValueError(
                f"WhatUnpool: expected x [{perm.numel()}, {self.in_channels}], got {tuple(x.shape)}"
            )
        base = self.fill.to(x.dtype).expand(num_nodes, -1).contiguous()
        return base.index_copy_(0, perm, x)

    def forward(self, x: Tensor, perm: Tensor, plan: EdgePlan, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``weight``: the R-GCN layer's relation weight, if computed ahead."""
        h = self.conv(self.unpool(x, perm, plan.num_nodes), plan=plan, weight=weight).relu()
        h = dropout(h, self.dropout, self.training)
        return h, self.recon(h)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, dropout={self.dropout}"
