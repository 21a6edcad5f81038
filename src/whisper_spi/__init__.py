"""whisper-spi: spectral dynamics of Whisper hallucination (arXiv 2604.08591), reproduced."""

__version__ = "0.1.0"
