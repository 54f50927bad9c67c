"""Figures: one function per figure kind, each saved as PNG and PDF."""
