"""SLIM-Diff reproducibility pipeline: shared-latent joint diffusion of FLAIR slices and FCD lesion masks."""

from slimdiff.allocator import use_huge_pages

# Before anything imports torch (every rule script and console command imports slimdiff first): PyTorch's CPU
# allocator reads its huge-page switch once (slimdiff/allocator.py).
use_huge_pages()

__version__ = "0.1.0"
