"""A stand-in UCI engine for match tests: plays the first legal move (sorted by UCI), reports a score, and can
be told (by its WeightsFile's name) to crash or to hang after some moves:
  "...crash-after-N..." exits with code 3 on the (N+1)-th `go`; "...hang-after-N..." stops answering."""

import re
import sys
import time

import chess


def main() -> None:
    board = chess.Board()
    weights = ""
    moves_made = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command = words[0]
        if command == "uci":
            print("id name fake-uci 1.0\noption name WeightsFile type string default x\n"
                  "option name Threads type spin default 1 min 1 max 8\n"
                  "option name ScoreType type combo default WDL_mu var centipawn var WDL_mu\nuciok", flush=True)
        elif command == "setoption" and "WeightsFile" in line:
            weights = line.split("value", 1)[1].strip()
        elif command == "isready":
            print("readyok", flush=True)
        elif command == "position":
            board = _position(words)
        elif command == "go":
            moves_made += 1
            limit = re.search(r"(crash|hang)-after-(\d+)", weights)
            if limit and moves_made > int(limit.group(2)):
                if limit.group(1) == "crash":
                    print("fake-uci: a simulated crash", file=sys.stderr, flush=True)
                    sys.exit(3)
                time.sleep(3600)
            move = sorted(board.legal_moves, key=lambda m: m.uci())[0]
            print(f"info depth 1 nodes 1 nps 1000 score cp 5 pv {move.uci()}\nbestmove {move.uci()}", flush=True)
        elif command == "quit":
            return


def _position(words: list[str]) -> chess.Board:
    if words[1] == "startpos":
        board, rest = chess.Board(), words[2:]
    else:
        index = words.index("moves") if "moves" in words else len(words)
        board, rest = chess.Board(" ".join(words[2:index])), words[index:]
    for uci in rest[1:] if rest and rest[0] == "moves" else []:
        board.push_uci(uci)
    return board


if __name__ == "__main__":
    main()
