"""Monte Carlo estimation over the base model, confidence bounds and certificates."""
