"""The demo model's vision tower: synthetic data, a small CNN, LiT-style training, evaluation."""
