"""The ONNX backend node test cases (model.onnx + test_data_set_0/{input,output}_K.pb) of some op types.

Usage: python3 onnx_node_cases.py OUT_DIR OP_TYPE [OP_TYPE ...]

Prints the directory holding the `test_*` case folders (one line, on stdout). Older `onnx` wheels ship
them as `onnx/backend/test/data/node`; that folder is used as is when it exists. The 1.2x wheels ship only
the Python that generates them (`onnx.backend.test.case.node`, what `backend-test-tools generate-data`
runs), so then the cases of the requested op types are written to OUT_DIR/node with the layout and bytes
that tool writes (it writes every case of every op, which takes far longer).
"""

import os
import sys

import onnx
from onnx import TensorProto, numpy_helper


def main() -> None:
    out, ops = sys.argv[1], set(sys.argv[2:])
    shipped = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if os.path.isdir(shipped) and os.listdir(shipped):
        print(shipped)
        return
    from onnx.backend.test.case import node

    node_dir = os.path.join(out, "node")
    os.makedirs(node_dir, exist_ok=True)
    for case in node.collect_testcases():
        if case.model is None or not any(n.op_type in ops for n in case.model.graph.node):
            continue
        # A case of a function-expanded op also lists other ops; keep only the cases whose nodes are all ours.
        if not all(n.op_type in ops for n in case.model.graph.node):
            continue
        case_dir = os.path.join(node_dir, case.name)
        data_dir = os.path.join(case_dir, "test_data_set_0")
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        for kind, values, infos in (("input", inputs, case.model.graph.input), ("output", outputs, case.model.graph.output)):
            for j, v in enumerate(values):
                if not infos[j].type.HasField("tensor_type"):
                    continue  # sequences, maps, optionals: not tensors, zeroq refuses the model anyway
                t = v if isinstance(v, TensorProto) else numpy_helper.from_array(v, infos[j].name)
                with open(os.path.join(data_dir, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
    print(node_dir)


if __name__ == "__main__":
    main()
