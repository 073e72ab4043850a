"""Evaluation: bits per byte, FLOP accounting, downstream tasks."""
