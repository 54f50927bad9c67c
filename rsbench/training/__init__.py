"""Training base classifiers with Gaussian noise augmentation."""
