"""The CLI stages: each is a Hydra app on its own root config (conf/<stage>.yaml)."""
