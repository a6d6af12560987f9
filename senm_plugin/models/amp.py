"""Mixed precision for the training models: ``train.amp: none | bf16 | fp16`` through ``torch.autocast``.

Networks keep float32 weights (checkpoints stay float32); only the forward passes run in the lower precision.
Loss terms are computed in float32 on float32 copies of the outputs. fp16 needs a CUDA device and uses a gradient
scaler; bf16 runs on CUDA and on CPU with no scaler.
"""
import contextlib

import torch

AMP_MODES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Amp:
    """Autocast context, backward and optimizer step for one model's ``train.amp`` setting."""

    def __init__(self, mode, device):
        mode = 'none' if mode in (None, False) else str(mode).lower()
        if mode not in AMP_MODES:
            raise ValueError(f'train.amp must be one of {sorted(AMP_MODES)}, got {mode!r}')
        device = torch.device(device)
        if mode == 'fp16' and device.type != 'cuda':
            raise ValueError(f'train.amp: fp16 needs a CUDA device (this run is on {device.type}); '
                             'use bf16 on CPU')
        self.mode, self.dtype, self.device_type = mode, AMP_MODES[mode], device.type
        self.scaler = torch.amp.GradScaler('cuda') if mode == 'fp16' else None

    @property
    def enabled(self):
        return self.dtype is not None

    def autocast(self):
        """Context in which forward passes run in the chosen precision (a no-op for ``none``)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss):
        """Backward of ``loss``, scaled for fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer):
        """Bring ``optimizer``'s gradients back to their true scale (before clipping or reading their norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer):
        """Optimizer step (through the scaler for fp16, which then adapts its scale)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def skip(self):
        """A step was skipped after ``unscale``: let the fp16 scaler lower its scale as it would on overflow."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
