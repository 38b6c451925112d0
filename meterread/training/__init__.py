"""Training and evaluation: datasets, train, warm start, evaluate (metrics, baselines), report, model registry."""
