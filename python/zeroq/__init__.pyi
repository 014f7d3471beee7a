"""Type stubs of the zeroq Python package. The keyword options are the CLI's (``zeroq COMMAND --help``),
with its defaults; python/tests/test_zeroq.py checks them against the runtime signatures, which are
read from the CLI's parser."""

import os
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
# An ONNX path, a zoo name, or a torch.nn.Module (with input_shape=); None with arch= and weights=.
Model = Any
# True: progress on stderr like the CLI; False: silent; a callable: gets each event as a dict,
# {"kind": "progress", "stage": str, "done": int, "total": int} or {"kind": "message", "text": str}.
Progress = Union[bool, Callable[[Dict[str, Any]], Any]]

class ZeroqError(Exception):
    """A zeroq command failed; the message is the CLI's one-line error."""

class Report:
    """A command's result: the JSON object ``zeroq COMMAND --json`` prints, fields as attributes."""

    def __init__(self, command: str, data: Dict[str, Any]) -> None: ...
    @property
    def command(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def __getattr__(self, name: str) -> Any: ...
    def __getitem__(self, name: str) -> Any: ...
    def __contains__(self, name: str) -> bool: ...
    def __dir__(self) -> List[str]: ...

def export_torch(module: Any, input_shape: Sequence[int], path: PathLike) -> str:
    """Writes a torch.nn.Module as FP32 ONNX (opset 17) with its BatchNorm layers kept; returns the path."""
    ...

def inspect(
    model: Model,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    input_shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
    progress: Progress = True,
) -> Report:
    """Show a model's inputs, outputs, operators, BatchNorm count and weight layers with their sizes"""
    ...


def distill(
    model: Model,
    output: Optional[PathLike] = None,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    preview: Optional[PathLike] = None,
    batch: Optional[int] = None,
    batches: int = 1,
    iters: Optional[int] = None,
    lr: float = 0.5,
    no_early_stop: bool = False,
    loss: Literal['pooled', 'normalized', 'zeroq'] = 'pooled',
    zeroq_recipe: bool = False,
    init: Literal['gaussian', 'uniform'] = 'gaussian',
    seed: int = 0,
    preset: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    input_shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
    progress: Progress = True,
) -> np.ndarray:
    """Synthesise distilled data from the model's BatchNorm statistics (ZeroQ §3.1)"""
    ...


def sensitivity(
    model: Model,
    output: Optional[PathLike] = None,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    distilled: Optional[Union[PathLike, ArrayLike]] = None,
    bits: Sequence[int] = [2, 4, 8],
    weight_range: Literal['minmax', 'symmetric', 'mse'] = 'minmax',
    plot: Optional[PathLike] = None,
    seed: int = 0,
    context_bits: Optional[int] = None,
    bias_corrected: bool = False,
    preset: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    no_prefix_reuse: bool = False,
    input_shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
    progress: Progress = True,
) -> Report:
    """Measure each weight layer's sensitivity to 2..8-bit quantization (ZeroQ §3.2)"""
    ...


def quantize(
    model: Model,
    output: PathLike,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    wbits: int = 8,
    mp: Optional[float] = None,
    size_budget: Optional[str] = None,
    mp_bits: Sequence[int] = [2, 3, 4, 5, 6, 8],
    sensitivity: Optional[PathLike] = None,
    distilled: Optional[Union[PathLike, ArrayLike]] = None,
    calib: Union[str, PathLike, ArrayLike] = 'distilled',
    calib_images: int = 32,
    abits: Union[int, Literal['fp32']] = 8,
    placement: Literal['deployable', 'zeroq'] = 'deployable',
    weight_range: Optional[Literal['minmax', 'symmetric', 'mse']] = None,
    act_range: str = 'minmax',
    preset: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    all_layers_abits: bool = False,
    edge_wbits: Optional[int] = None,
    reconstruct: Literal['auto', 'off', 'bias', 'adaround', 'brecq'] = 'auto',
    recon_iters: Optional[int] = None,
    recon_batch: Optional[int] = None,
    recon_no_bias_first: bool = False,
    recon_no_bias_after: bool = False,
    recon_qdrop: Optional[float] = None,
    recon_no_lsq: bool = False,
    recon_lr: Optional[float] = None,
    recon_lambda: Optional[float] = None,
    recon_no_lowpass: bool = False,
    seed: int = 0,
    report: Optional[PathLike] = None,
    eval: Optional[str] = None,
    limit: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
    progress: Progress = True,
) -> Report:
    """Quantize with calibrated ranges (uniform or mixed-precision weights) and write an ONNX QDQ model"""
    ...


def run(
    model: Model,
    out: PathLike,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    force: bool = False,
    wbits: Optional[str] = None,
    mp: Optional[float] = None,
    size_budget: Optional[str] = None,
    mp_bits: Sequence[int] = [2, 3, 4, 5, 6, 8],
    abits: Union[int, Literal['fp32']] = 8,
    placement: Literal['deployable', 'zeroq'] = 'deployable',
    weight_range: Optional[Literal['minmax', 'symmetric', 'mse']] = None,
    act_range: str = 'minmax',
    preset: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    all_layers_abits: bool = False,
    edge_wbits: Optional[int] = None,
    reconstruct: Literal['auto', 'off', 'bias', 'adaround', 'brecq'] = 'auto',
    recon_iters: Optional[int] = None,
    recon_batch: Optional[int] = None,
    recon_no_bias_first: bool = False,
    recon_no_bias_after: bool = False,
    recon_qdrop: Optional[float] = None,
    recon_no_lsq: bool = False,
    recon_lr: Optional[float] = None,
    recon_lambda: Optional[float] = None,
    recon_no_lowpass: bool = False,
    eval: Optional[str] = None,
    limit: Optional[int] = None,
    batch: Optional[int] = None,
    iters: Optional[int] = None,
    seed: int = 0,
    input_shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
    progress: Progress = True,
) -> Report:
    """The whole job: distil, measure sensitivity, choose bits, calibrate, quantize, export, report"""
    ...


def evaluate(
    model: Model,
    images: Union[str, PathLike, ArrayLike],
    labels: Optional[ArrayLike] = None,
    *,
    arch: Optional[str] = None,
    weights: Optional[PathLike] = None,
    preset: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    resize: Optional[int] = None,
    crop: Optional[int] = None,
    limit: Optional[int] = None,
    batch: Optional[int] = None,
    save_logits: Optional[PathLike] = None,
    input_shape: Optional[Sequence[int]] = None,
    threads: Optional[int] = None,
    progress: Progress = True,
) -> Dict[str, Any]:
    """Measure top-1/top-5 accuracy and throughput on a labelled set"""
    ...
