"""What the hardware gets: 4-bit or not, the compute dtype, bf16 or fp16 mixed precision."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolforge.config import ConfigError


@dataclass(frozen=True)
class PrecisionPlan:
    quantization: str          # "4bit" (QLoRA) or "none"
    dtype: Any                 # the torch dtype the base model is loaded in
    bf16: bool                 # the Trainer's mixed-precision switches
    fp16: bool
    device_name: str = "CPU"   # what the plan's line names

    def autocast(self):
        """The context the loss and the frozen layers run in: bfloat16 autocast on a CPU plan with ``bf16``
        (its model stays float32: autocast was 2.1x float32 for the CPU arm's step, bfloat16 weights 1.8x;
        docs/training.md), else nothing (a GPU plan's model is already in its compute dtype)."""
        import contextlib

        import torch

        if self.device_name == "CPU" and self.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def line(self) -> str:
        """One line saying what this hardware gets."""
        if self.device_name == "CPU":
            if self.bf16:
                return ("device: CPU: LoRA in float32 computed in bfloat16 (autocast: this CPU multiplies "
                        "bfloat16 natively), no gradient checkpointing")
            return ("device: CPU: plain LoRA in float32 (4-bit brings nothing on a CPU), "
                    "no mixed precision, no gradient checkpointing")
        method = "QLoRA (4-bit NF4, double quantisation)" if self.quantization == "4bit" else "LoRA"
        mixed = "bf16" if self.bf16 else "fp16" if self.fp16 else "no"
        return f"device: {self.device_name}: {method}, {mixed} mixed precision"


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX, as oneDNN reports)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def precision_plan(device: str, quantization: str, mixed_precision: str = "auto") -> PrecisionPlan:
    """The plan for ``device`` and the arm's ``quantization`` / ``mixed_precision``. On a CPU: no 4-bit and
    no fp16 (asking for either is an error naming the field); float32, or with ``bf16`` float32 weights
    computed in bfloat16 (``autocast``) where the CPU multiplies it natively (elsewhere float32, said)."""
    import torch

    from toolforge.model import compute_dtype

    if not device.startswith("cuda"):
        if quantization == "4bit" or mixed_precision == "fp16":
            raise ConfigError("quantization/mixed_precision: 4-bit and fp16 need a CUDA GPU; use quantization: "
                              "auto (or none) and mixed_precision: auto, no or bf16 on a CPU")
        bf16 = mixed_precision == "bf16" and cpu_computes_bf16()
        if mixed_precision == "bf16" and not bf16:
            print("precision: this CPU has no native bfloat16 (AVX512-BF16 or AMX): float32 instead")
        return PrecisionPlan("none", torch.float32, bf16=bf16, fp16=False)
    if mixed_precision == "auto":
        mixed_precision = "bf16" if compute_dtype(device) == torch.bfloat16 else "fp16"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[mixed_precision]
    return PrecisionPlan("4bit" if quantization in ("4bit", "auto") else "none", dtype,
                         bf16=mixed_precision == "bf16", fp16=mixed_precision == "fp16",
                         device_name=torch.cuda.get_device_name())


def ensure_fp32_trainable(model, fp16: bool) -> int:
    """With fp16 mixed precision (a T4) the grad scaler needs float32 trainable parameters; recent trl
    casts a quantized model's adapters to bfloat16, which breaks it. Cast them back; returns how many."""
    import torch

    if not fp16:
        return 0
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    if cast:
        print(f"precision: cast {cast} trainable tensors to float32 (fp16 mixed precision needs fp32 adapters)")
    return cast
