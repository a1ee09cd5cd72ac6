"""SLIM-Diff reproducibility pipeline: shared-latent joint diffusion of FLAIR slices and FCD lesion masks."""

__version__ = "0.1.0"
