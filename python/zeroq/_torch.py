"""Export a ``torch.nn.Module`` to ONNX with its BatchNorm layers kept (ZeroQ distils data from their
running statistics), by the recipe verified in ``shared/assets/MANIFEST.md``. torch is imported only
here, when a module is given."""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence


def export_torch(module: Any, input_shape: Sequence[int], path: "str | os.PathLike[str]") -> str:
    """Writes ``module`` as FP32 ONNX (opset 17) to ``path`` and returns the path.

    ``input_shape`` is an example input shape, ``(N, C, H, W)`` or ``(C, H, W)``; the batch axis is
    exported dynamic. PyTorch's default exporters fold BatchNorm into the convolutions (the TorchScript
    exporter in its default EVAL training mode, the dynamo exporter through its optimizer), which leaves
    nothing to distil from, so this uses the TorchScript exporter with ``TrainingMode.PRESERVE`` on the
    module in eval mode: every ``BatchNorm2d`` becomes a ``BatchNormalization`` node. The module's
    training/eval mode is restored afterwards and its weights and statistics are not changed. Raises
    :class:`zeroq.ZeroqError` if the export still lost a BatchNorm layer.
    """
    import torch  # only when a module is given

    from ._zeroq import ZeroqError

    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ZeroqError(f"input_shape {tuple(input_shape)}: expected (N, C, H, W) or (C, H, W) with every size >= 1")
    path = os.fspath(path)
    try:
        param = next(module.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    if dtype != torch.float32:
        raise ZeroqError(f"{type(module).__name__}: parameters are {dtype}; zeroq quantizes FP32 models (call .float() first)")
    bn_count = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The exporter warns that TorchScript export is legacy and that constant folding in
            # PRESERVE mode may change trainable parameters: it cannot here, the module is in eval mode.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=r".*constant folding be turned off.*")
            torch.onnx.export(
                module,
                (torch.zeros(shape, dtype=dtype, device=device),),
                path,
                dynamo=False,
                training=torch.onnx.TrainingMode.PRESERVE,
                do_constant_folding=True,
                opset_version=17,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            )
    finally:
        module.train(was_training)
    exported = _count_batch_norms(path)
    if exported is not None and exported != bn_count:
        raise ZeroqError(
            f"{type(module).__name__}: the ONNX export has {exported} BatchNormalization nodes for {bn_count} BatchNorm "
            "layers (folded away?); zeroq needs them to distil data"
        )
    return path


def _count_batch_norms(path: str) -> "int | None":
    """BatchNormalization nodes in the exported graph, or None when the onnx package is absent."""
    try:
        import onnx
    except ImportError:
        return None
    return sum(n.op_type == "BatchNormalization" for n in onnx.load(path, load_external_data=False).graph.node)
