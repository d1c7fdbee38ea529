"""Rate-distortion benchmark: srnvtk against classic lossy codecs (SZ3, ZFP, SPERR, TTHRESH) on the same
volumes, at the same target ratios, with one PSNR definition. Run from the repository root:

    .venv/bin/python -m benchmarks.rd --help
"""
