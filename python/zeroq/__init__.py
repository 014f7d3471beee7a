"""zeroq: data-free (zero-shot) quantization of neural networks (ZeroQ, Cai et al., CVPR 2020), from Python.

Each function runs the ``zeroq`` command of the same name in process, with keyword arguments named as
the command's options (``--size-budget`` is ``size_budget=``) and the same defaults, checks and error
messages: the function is a thin layer over the command's own argument parser. ``help(zeroq.quantize)``
lists every option with the CLI's help text.

``model`` is an ONNX path, a zoo name (``"efficientnet-lite0"``), or a ``torch.nn.Module`` with
``input_shape=`` (exported to ONNX with its BatchNorm layers kept, see :func:`export_torch`); a PyTorch
checkpoint is ``model=None, arch=..., weights=...``. Data can be numpy arrays where the command reads a
``.npy`` (``distilled=``, and ``calib=`` for quantize) and for :func:`evaluate`.

Every function also takes ``threads=`` (the CLI's ``--threads``; the first call of a process sets the
thread pool) and ``progress=``: ``True`` (default) draws progress on stderr as the CLI does, ``False``
silences it, a callable receives each event as a dict (``{"kind": "progress", "stage", "done",
"total"}`` or ``{"kind": "message", "text"}``). The work runs without the GIL; Ctrl-C stops it at the
next progress step with ``KeyboardInterrupt`` and leaves no partial file (files are written to a
temporary name and renamed). Failures raise :class:`ZeroqError` with the CLI's one-line message.
"""

from __future__ import annotations

import copy
import inspect as _inspect
import json
import os
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import _zeroq
from ._zeroq import ZeroqError, __version__
from ._torch import export_torch

__all__ = [
    "Report",
    "ZeroqError",
    "distill",
    "evaluate",
    "export_torch",
    "inspect",
    "quantize",
    "run",
    "sensitivity",
    "__version__",
]


class Report:
    """A command's result: the JSON object ``zeroq COMMAND --json`` prints.

    Fields read as attributes (``report.quantized_size_bytes``; nested objects are Reports too) or
    items (``report["weights"]``); :meth:`to_dict` gives a plain ``dict``.
    """

    __slots__ = ("_command", "_data")

    def __init__(self, command: str, data: Dict[str, Any]):
        self._command = command
        self._data = data

    @property
    def command(self) -> str:
        """The command that made it (``quantize``, ``run``, ...)."""
        return self._command

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain (deep-copied) ``dict``, as in the command's JSON."""
        return copy.deepcopy(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # unset slots (copy, pickle) must not recurse into _data
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"{self._command} report has no field '{name}' (fields: {', '.join(self._data)})") from None
        return Report(self._command, value) if isinstance(value, dict) else value

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def __dir__(self) -> List[str]:
        return sorted(set(self._data) | {"command", "to_dict"})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Report) and (self._command, self._data) == (other._command, other._data)

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            r = repr(v)
            return r if len(r) <= 40 else r[:37] + "..."

        fields = ", ".join(f"{k}={short(v)}" for k, v in self._data.items())
        return f"Report[{self._command}]({fields})"


# --- from keyword arguments to the command line -------------------------------------------------

# Options that Python gives another way: the model (MODEL, --zoo) is `model`; the global output
# switches are `progress`.
_MODEL_OPTIONS = {"path", "zoo"}
_HIDDEN = {"quiet", "json"}
_options_cache: Dict[str, Dict[str, Any]] = {}


def _options(command: str) -> Dict[str, Any]:
    if command not in _options_cache:
        spec = _zeroq.options(command)
        spec["by_name"] = {o["name"]: o for o in spec["options"]}
        _options_cache[command] = spec
    return _options_cache[command]


def _flag_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_flag_value(x) for x in v)
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _model_args(model: Any, input_shape: Any, tmp: str) -> List[str]:
    if model is None:
        return []  # arch= and weights= name it
    if _is_torch_module(model):
        if input_shape is None:
            raise ZeroqError("a torch.nn.Module needs input_shape=, e.g. (1, 3, 32, 32), to be exported to ONNX")
        path = os.path.join(tmp, f"{type(model).__name__}.onnx")
        export_torch(model, input_shape, path)
        return ["--", path]
    if input_shape is not None:
        raise ZeroqError("input_shape= is only for a torch.nn.Module model")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path) and path in _zeroq.zoo_names():
            return [f"--zoo={path}"]
        return ["--", path]
    raise ZeroqError(f"model: expected an ONNX path, a zoo name ({', '.join(_zeroq.zoo_names())}) or a torch.nn.Module, got {type(model).__name__}")


def _save_array(tmp: str, name: str, value: Any) -> str:
    path = os.path.join(tmp, f"{name}.npy")
    np.save(path, np.ascontiguousarray(value, dtype=np.float32))
    return path


def _argv(command: str, options: Dict[str, Any], tmp: str, func: str) -> List[str]:
    spec = _options(command)["by_name"]
    argv: List[str] = []
    for name, value in options.items():
        o = spec.get(name)
        if o is None or o["positional"] or name in _MODEL_OPTIONS | _HIDDEN:
            raise TypeError(f"{func}() got an unexpected keyword argument '{name}'")
        if value is None or value is False:
            continue  # the CLI's default
        if isinstance(value, np.ndarray):
            value = _save_array(tmp, name, value)
        if o["switch"]:
            if value is not True:
                raise ZeroqError(f"{name}: expected True or False, got {value!r}")
            argv.append(o["flag"])
        else:
            argv.append(f"{o['flag']}={_flag_value(value)}")
    return argv


def _call(command: str, func: str, model: Any, options: Dict[str, Any], fixed: Dict[str, Any], images: Any = None) -> Optional[Dict[str, Any]]:
    progress = options.pop("progress", True)
    threads = options.pop("threads", None)
    input_shape = options.pop("input_shape", None)
    callback: Optional[Callable[[Dict[str, Any]], Any]] = progress if callable(progress) else None
    quiet = progress is not True
    if progress is True and not _stderr_is_fd2():
        # A notebook: what the CLI would print on stderr goes to sys.stderr (shown in the cell) instead.
        callback, quiet = _write_messages, True
    for name in fixed:
        if name in options:
            raise TypeError(f"{func}() got multiple values for argument '{name}'")
    with tempfile.TemporaryDirectory(prefix="zeroq-") as tmp:
        argv = ["zeroq"]
        if threads is not None:
            argv.append(f"--threads={_flag_value(threads)}")
        argv.append(command)
        argv += _argv(command, {**fixed, **options}, tmp, func)
        argv += _model_args(model, input_shape, tmp)
        out = _zeroq.run(argv, quiet, callback, images)
    return None if out is None else json.loads(out)


def _stderr_is_fd2() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


def _write_messages(event: Dict[str, Any]) -> None:
    if event["kind"] == "message" and sys.stderr is not None:
        sys.stderr.write(event["text"] + "\n")


def _cli_default(o: Dict[str, Any]) -> Any:
    """An option's default as a Python value (what clap fills in when the keyword is not given)."""
    if o["switch"]:
        return False
    values = o["default"]
    if not values:
        return None

    def typed(s: str) -> Any:
        for t in (int, float):
            try:
                return t(s)
            except ValueError:
                pass
        return s

    if o["multiple"]:
        return [typed(x) for v in values for x in v.split(",")]
    return typed(values[0])


def _document(func: Callable[..., Any], command: str, positional: Dict[str, Any], extra: str = "") -> None:
    """Gives `func` the signature and docs of `zeroq COMMAND`: after `model` and `positional` (name →
    default, `_REQUIRED` for none), one keyword per option of the command, with the CLI's default and
    help text."""
    spec = _options(command)
    P = _inspect.Parameter
    params = [P("model", P.POSITIONAL_OR_KEYWORD)]
    params += [P(p, P.POSITIONAL_OR_KEYWORD, default=d) for p, d in positional.items()]
    taken = set(positional) | ({"data"} if command == "eval" else set())
    lines = [spec["about"], "", f"Runs ``zeroq {command}`` in process.{extra}", "", "Options (the CLI's, ``name=`` for ``--name``):"]
    for o in spec["options"]:
        name = o["name"]
        if o["positional"] or name in _MODEL_OPTIONS | _HIDDEN or name in taken or o["global"]:
            continue
        default = _cli_default(o)
        params.append(P(name, P.KEYWORD_ONLY, default=default))
        choices = f" One of {', '.join(o['choices'])}." if o["choices"] else ""
        help_text = " ".join(o["help"].split())
        lines.append(f"  {name}={default!r}: {help_text}{choices}")
    params += [P("input_shape", P.KEYWORD_ONLY, default=None), P("threads", P.KEYWORD_ONLY, default=None), P("progress", P.KEYWORD_ONLY, default=True)]
    lines += [
        "  input_shape=None: with a torch.nn.Module model, its example input shape, e.g. (1, 3, 32, 32).",
        "  threads=None: CPU threads (default: every core; the first call of the process sets it).",
        "  progress=True: True draws progress on stderr like the CLI, False is silent, a callable gets each event.",
    ]
    func.__signature__ = _inspect.Signature(params)  # type: ignore[attr-defined]
    func.__doc__ = "\n".join(lines)


# --- the commands -------------------------------------------------------------------------------


def inspect(model: Any, **options: Any) -> Report:
    return Report("inspect", _call("inspect", "inspect", model, options, {}) or {})


def distill(model: Any, output: Any = None, **options: Any) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="zeroq-distill-") as tmp:
        path = os.fspath(output) if output is not None else os.path.join(tmp, "distilled.npy")
        _call("distill", "distill", model, options, {"output": path})
        return np.load(path)


def sensitivity(model: Any, output: Any = None, **options: Any) -> Report:
    with tempfile.TemporaryDirectory(prefix="zeroq-sensitivity-") as tmp:
        path = os.fspath(output) if output is not None else os.path.join(tmp, "sensitivity.json")
        return Report("sensitivity", _call("sensitivity", "sensitivity", model, options, {"output": path}) or {})


def quantize(model: Any, output: Any, **options: Any) -> Report:
    calib = options.get("calib")
    if isinstance(calib, np.ndarray):
        if options.get("distilled") is not None:
            raise ZeroqError("give calibration data once: calib= (an array) or distilled=, not both")
        options["distilled"] = options.pop("calib")
    return Report("quantize", _call("quantize", "quantize", model, options, {"output": output}) or {})


def run(model: Any, out: Any, **options: Any) -> Report:
    return Report("run", _call("run", "run", model, options, {"out": out}) or {})


def evaluate(model: Any, images: Any, labels: Any = None, **options: Any) -> Dict[str, Any]:
    if isinstance(images, (str, os.PathLike)):
        if labels is not None:
            raise ZeroqError("labels= goes with an array of images; a data set spec (cifar10:PATH, folder:DIR) has its own")
        return _call("eval", "evaluate", model, options, {"data": os.fspath(images)}) or {}
    arr = np.ascontiguousarray(images, dtype="<f4")
    if labels is None:
        raise ZeroqError("evaluate: an array of images needs labels= (one class index per image)")
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ZeroqError(f"labels: expected a 1-D array of class indices, got shape {lab.shape} of {lab.dtype}")
    return _call("eval", "evaluate", model, options, {"data": "array:"}, (arr.tobytes(), list(arr.shape), lab.astype(np.int64).tolist())) or {}


_REQUIRED = _inspect.Parameter.empty
_document(inspect, "inspect", {}, " Returns the summary (inputs, outputs, operators, weight layers, default distillation size).")
_document(distill, "distill", {"output": None}, " Returns the distilled images, float32 [N, C, H, W] (also written to output= when given).")
_document(sensitivity, "sensitivity", {"output": None}, " Returns the table as a Report (also written to output= when given).")
_document(quantize, "quantize", {"output": _REQUIRED}, " calib= may be an array of calibration images [N, C, H, W] (model input); returns the report.")
_document(run, "run", {"out": _REQUIRED}, " Returns what report.json holds.")
_document(evaluate, "eval", {"images": _REQUIRED, "labels": None}, " images= is a data set spec (cifar10:PATH, folder:DIR) or an array of model inputs [N, C, H, W] with labels=; returns the JSON as a dict.")
