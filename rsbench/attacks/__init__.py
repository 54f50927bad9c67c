"""Adversarial attacks shared by training (IDRS adversarial training) and certification methods (DSmooth)."""

from rsbench.attacks.l2 import l2_pgd

__all__ = ["l2_pgd"]
