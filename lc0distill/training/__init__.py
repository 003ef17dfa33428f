"""The parts of a training run, which lc0distill.train wires into its loop.

    setup        device, ranks' batch share, seeds, the optimizer
    state        what a checkpoint holds (student, optimizer, SWA, step, data position, guard) and best.pt
    data         the training stream (replayed or reseeded at a resume) and the held-out batches
    teaching     the teacher side: live nets, a snapshot of the student or a cache; weights and temperature
    step         one optimizer step: objective, non-finite guard, SWA
    logs         metrics.jsonl, TensorBoard, the lines for the person watching, curves.png
    distributed  DDP set-up and the ranks' final agreement
"""
