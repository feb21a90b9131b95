"""An independent PyTorch forward pass of EfficientNet-Lite0, straight from the state dict.

Used only where torch happens to be installed, to check the Keras conversion end to end. It
re-derives the architecture from the reference code's conventions (TF "same" padding, BN epsilon
1e-3, ReLU6, input (x - 127) / 128) rather than reusing the toolkit's code.
"""

from __future__ import annotations

import math

# (kernel, stride) of the 16 MBConv blocks of Lite0, stage by stage.
_BLOCKS = [(3, 1)] + [(3, 2), (3, 1)] + [(5, 2), (5, 1)] + [(3, 2), (3, 1), (3, 1)] + [(5, 1)] * 3 \
    + [(5, 2), (5, 1), (5, 1), (5, 1)] + [(3, 1)]


def _same_pad(x, kernel, stride):
    import torch.nn.functional as F

    height, width = x.shape[-2:]
    pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
    pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def _bn(x, state, prefix):
    import torch.nn.functional as F

    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, 0.0, 1e-3)


def lite0_forward(state, pixels_nhwc):
    """Return the 1000 ImageNet logits for raw RGB pixels [N, H, W, 3] in [0, 255]."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        x = (pixels_nhwc.permute(0, 3, 1, 2).float() - 127.0) / 128.0
        x = F.relu6(_bn(F.conv2d(_same_pad(x, 3, 2), state["_conv_stem.weight"], stride=2), state, "_bn0"))
        for i, (kernel, stride) in enumerate(_BLOCKS):
            p, inputs = f"_blocks.{i}.", x
            if i > 0:
                x = F.relu6(_bn(F.conv2d(x, state[p + "_expand_conv.weight"]), state, p + "_bn0"))
            x = F.conv2d(_same_pad(x, kernel, stride), state[p + "_depthwise_conv.weight"], stride=stride,
                         groups=x.shape[1])
            x = F.relu6(_bn(x, state, p + "_bn1"))
            x = _bn(F.conv2d(x, state[p + "_project_conv.weight"]), state, p + "_bn2")
            if stride == 1 and inputs.shape == x.shape:
                x = x + inputs
        x = F.relu6(_bn(F.conv2d(x, state["_conv_head.weight"]), state, "_bn1"))
        return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])
