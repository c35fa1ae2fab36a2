"""Evaluation: case validation, the generated evaluator and its run-time library, decisions and
their JSON, the reference interpreter, the durable-rules backend and the examples runner."""
