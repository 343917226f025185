"""Quantizers as compressors (:class:`edgeval.converters.compressor.Compressor`)."""
