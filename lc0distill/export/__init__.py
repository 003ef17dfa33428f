"""Export for engine use: ONNX graphs with lc0's tensor names, ONNX embedded in lc0 `.pb.gz` files, an
onnxruntime-backed net for evaluating exported files, and the validation every export runs."""
