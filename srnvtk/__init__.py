"""srnvtk: compress VTK image data with scene representation networks."""

__version__ = "0.1.0"
