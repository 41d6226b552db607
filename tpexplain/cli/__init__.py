"""The `tpexplain` command line: a thin layer over the Python API (`tpexplain --help`)."""
from .main import main

__all__ = ["main"]
