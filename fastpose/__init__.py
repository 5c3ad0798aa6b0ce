"""fastpose: FastPoseCNN-style 6D object pose estimation with runs that journal themselves."""

__version__ = "0.1.0"
