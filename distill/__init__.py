"""Distillation: candidate mining, teacher labelling, student training."""
