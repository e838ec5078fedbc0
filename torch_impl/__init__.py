"""PyTorch optimizers mirroring ``theory`` (issue: torch_impl)."""
