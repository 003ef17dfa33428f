"""The names and constants of the ONNX graphs lc0distill writes and reads, without importing onnx (a command
that never touches ONNX should not pay for loading it)."""

INPUT_NAME = "/input/planes"
POLICY_NAME = "/output/policy"
WDL_NAME = "/output/wdl"
VALUE_NAME = "/output/value"
MLH_NAME = "/output/mlh"
BATCH_AXIS = "batch"
DEFAULT_OPSET = 17  # lc0's default
MIN_OPSET, MAX_OPSET = 9, 22
MODEL_DOMAIN = "org.lczero.models.*"  # lc0's convention
PRODUCER = "lc0distill"
METADATA_INPUT_FORMAT = "lc0distill.input_format"  # lc0's own files carry no input format; ours say it
METADATA_NET = "lc0distill.net"
